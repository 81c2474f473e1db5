/* kal_spawn and its guardian (see kal_spawn.h). */
#define _GNU_SOURCE
#include "kal_spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "shim_private.h"

/* pipe2(report, O_CLOEXEC), then fork(): the child's pid (0 in the child), or -errno with the pipe
 * closed. The child reports a failure through report[1] before exec; exec closes it (EOF). */
pid_t kal_fork_with_report_pipe(int report[2]) {
    if (pipe2(report, O_CLOEXEC) != 0) return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(report[0]);
        close(report[1]);
        return -err;
    }
    return pid;
}

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
static void close_from(unsigned int first, unsigned int last) {
    if (first > last) return;
    if (syscall(SYS_close_range, first, last, 0) == 0) return;
    for (unsigned int fd = first; fd <= last && fd < 65536; fd++) close((int)fd);
}

static void child_fail(int report_fd) {
    int err = errno;
    (void)!write(report_fd, &err, sizeof(err));
    _exit(127);
}

/* Makes fds[0..nfds-1] the descriptors 0..nfds-1 and closes every other one but the report pipe,
 * which is moved above them and returned. */
static int arrange_descriptors(const int *fds, int nfds, int report_fd) {
    int base = nfds + 3 > report_fd + 1 ? nfds + 3 : report_fd + 1;
    int moved[64];
    if (nfds > 64) { errno = EINVAL; child_fail(report_fd); }
    /* Move the wanted descriptors above every target slot first, so no dup2 clobbers a source. */
    for (int i = 0; i < nfds; i++) {
        moved[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, base + 64);
        if (moved[i] < 0) child_fail(report_fd);
    }
    int report = fcntl(report_fd, F_DUPFD_CLOEXEC, base + 64 + nfds);
    if (report < 0) child_fail(report_fd);
    for (int i = 0; i < nfds; i++) {
        if (dup2(moved[i], i) < 0) child_fail(report);
    }
    close_from((unsigned int)nfds, (unsigned int)report - 1);
    close_from((unsigned int)report + 1, ~0U);
    return report;
}

/* The kernel's struct sigaction (rt_sigaction(2)), not glibc's. */
struct kal_kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    uint64_t mask;
};

/* Every disposition to SIG_DFL, nothing blocked. Through the system call: glibc's sigaction refuses
 * its own signals 32 and 33, which a caller may have ignored (and an ignored signal survives exec). */
static void reset_signals(void) {
    struct kal_kernel_sigaction dfl = { SIG_DFL, 0, NULL, 0 };
    for (int sig = 1; sig < 65; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP) continue;
        syscall(SYS_rt_sigaction, sig, &dfl, NULL, sizeof(dfl.mask));
    }
    uint64_t none = 0;
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof(none));
}

/* The program's side of the fork: descriptors are already 0..nfds-1 (or arranged here). */
static void exec_program(const char *path, char *const argv[], char *const envp[], const int *fds, int nfds,
                         const char *cwd, int flags, int report_fd, pid_t parent, int arrange) {
    reset_signals();
    if ((flags & KAL_SPAWN_NEW_PROCESS_GROUP) && setpgid(0, 0) != 0) child_fail(report_fd);
    if (flags & KAL_SPAWN_PARENT_DEATH_KILL) {
        if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) child_fail(report_fd);
        if (getppid() != parent) _exit(127);
    }
    if (flags & KAL_SPAWN_NO_CORE_DUMP) {
        struct rlimit no_core = { 0, 0 };
        setrlimit(RLIMIT_CORE, &no_core);
    }
    if (arrange) report_fd = arrange_descriptors(fds, nfds, report_fd);
    if (cwd && chdir(cwd) != 0) child_fail(report_fd);
    if ((flags & KAL_SPAWN_HIDE_PTRACE_XSTATE) && kal_install_xstate_filter() != 0) child_fail(report_fd);
    execve(path, argv, envp);
    child_fail(report_fd);
}

struct kal_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};
/* The kernel's struct linux_dirent64 (include/linux/dirent.h): d_name after 8 + 8 + 2 + 1 bytes. */
_Static_assert(offsetof(struct kal_dirent64, d_name) == 19, "struct linux_dirent64 layout");

/* rm -rf with system calls only (the guardian is a fork of a threaded process: no malloc). */
static void remove_tree_at(int dirfd, const char *name, int depth) {
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0 && depth < 16) {
        char buffer[4096];
        for (int pass = 0; pass < 4; pass++) {
            int removed = 0;
            lseek(fd, 0, SEEK_SET);
            for (;;) {
                long n = syscall(SYS_getdents64, fd, buffer, sizeof(buffer));
                if (n <= 0) break;
                for (long offset = 0; offset < n;) {
                    struct kal_dirent64 *entry = (struct kal_dirent64 *)(buffer + offset);
                    offset += entry->d_reclen;
                    const char *e = entry->d_name;
                    if (e[0] == '.' && (e[1] == 0 || (e[1] == '.' && e[2] == 0))) continue;
                    remove_tree_at(fd, e, depth + 1);
                    removed = 1;
                }
            }
            if (!removed) break;
        }
    }
    if (fd >= 0) close(fd);
    unlinkat(dirfd, name, AT_REMOVEDIR);
}

static int shell_status(int raw) {
    if (WIFEXITED(raw)) return WEXITSTATUS(raw);
    if (WIFSIGNALED(raw)) return 128 + WTERMSIG(raw);
    return 127;
}

static void run_guardian(const char *path, char *const argv[], char *const envp[], const int *fds, int nfds,
                         const char *cwd, int flags, char *const cleanup_paths[], int report_fd, pid_t caller) {
    sigset_t watched;
    reset_signals();
    sigemptyset(&watched);
    int watched_signals[] = { SIGTERM, SIGCHLD, SIGINT, SIGHUP, SIGQUIT };
    for (unsigned i = 0; i < sizeof(watched_signals) / sizeof(watched_signals[0]); i++) sigaddset(&watched, watched_signals[i]);
    sigprocmask(SIG_BLOCK, &watched, NULL);
    int stopped = 0;
    /* Shows as such in ps/top (it is a fork of the caller, with the caller's command line). */
    prctl(PR_SET_NAME, "kal-guardian", 0, 0, 0);
    if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) != 0) child_fail(report_fd);
    if (getppid() != caller) stopped = 1;
    if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0) child_fail(report_fd);
    /* Only the program's descriptors stay open here: nothing of the caller's is held. */
    report_fd = arrange_descriptors(fds, nfds, report_fd);
    pid_t self = getpid();
    pid_t program = stopped ? -1 : fork();
    if (program < 0 && !stopped) child_fail(report_fd);
    if (program == 0) {
        exec_program(path, argv, envp, fds, nfds, cwd, (flags | KAL_SPAWN_NEW_PROCESS_GROUP | KAL_SPAWN_PARENT_DEATH_KILL),
                     report_fd, self, 0);
    }
    /* The program's copy of the report pipe closes on exec; ours closes now, so the caller sees EOF. */
    close(report_fd);
    for (int fd = 0; fd < nfds; fd++) close(fd);
    int status = 0, exited = 0;
    while (!stopped && !exited) {
        siginfo_t info;
        int sig = sigwaitinfo(&watched, &info);
        if (sig == SIGTERM || sig == SIGHUP) stopped = 1;
        if (sig == SIGCHLD || sig < 0) {
            int raw;
            pid_t pid;
            while ((pid = waitpid(-1, &raw, WNOHANG)) > 0) {
                if (pid == program) { exited = 1; status = shell_status(raw); }
            }
        }
        /* SIGINT, SIGQUIT: the caller decides (it gets them from the terminal too). */
    }
    if (program > 0) kill(-program, SIGKILL);
    for (;;) {
        int raw;
        pid_t pid = waitpid(-1, &raw, 0);
        if (pid < 0 && errno == EINTR) continue;
        if (pid < 0) break;
        if (pid == program && !exited) { exited = 1; status = shell_status(raw); }
        if (program > 0) kill(-program, SIGKILL);
    }
    if (stopped) {
        for (int i = 0; cleanup_paths && cleanup_paths[i]; i++) remove_tree_at(AT_FDCWD, cleanup_paths[i], 0);
        _exit(128 + SIGTERM);
    }
    _exit(status);
}

/* Three descriptors reserved at load time (the lowest free ones then, normally 3, 4, 5) and, while
 * spawning, the slots the child's stdio passes through. /dev/null, CLOEXEC, when idle. */
static int stdio_slots[3] = {-1, -1, -1};
static pthread_mutex_t stdio_spawn_lock = PTHREAD_MUTEX_INITIALIZER;
static _Alignas(64) char stdio_spawn_stack[64 * 1024];

/* Slots above 2 (a harness started with a closed stdio must not get its slots there). At load time
 * when /dev is there, so they are the lowest descriptors; else at the first spawn. */
static void reserve_stdio_slots(void) {
    for (int i = 0; i < 3; i++) {
        if (stdio_slots[i] >= 0) continue;
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) return;
        if (fd > 2) { stdio_slots[i] = fd; continue; }
        stdio_slots[i] = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        close(fd);
    }
}

__attribute__((constructor)) static void reserve_stdio_slots_at_load(void) { reserve_stdio_slots(); }

struct stdio_spawn {
    const char *path;
    char *const *argv;
    char *const *envp;
    int top;            /* the highest slot */
    volatile int err;   /* the child's errno when it could not exec (shared memory: CLONE_VM) */
};

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif

static int stdio_spawn_child(void *arg) {
    struct stdio_spawn *s = arg;
    /* A private descriptor table holding only 0 … top (the kernel copies nothing above). */
    if (syscall(SYS_close_range, s->top + 1, ~0U, CLOSE_RANGE_UNSHARE) != 0) {
        /* Before Linux 5.9: a full private copy, then closed above the slots. */
        if (unshare(CLONE_FILES) != 0) { s->err = errno; _exit(127); }
        int max = (int)sysconf(_SC_OPEN_MAX);
        for (int fd = s->top + 1; fd < max; fd++) close(fd);
    }
    for (int i = 0; i < 3; i++) {
        if (dup2(stdio_slots[i], i) < 0) { s->err = errno; _exit(127); }
    }
    /* 3 … top: the slots and whatever low descriptors the harness had before them. */
    for (int fd = 3; fd <= s->top; fd++) close(fd);
    /* The signal table is our own copy (no CLONE_SIGHAND): default dispositions, nothing blocked,
     * as on kal_spawn's fork path. */
    reset_signals();
    execve(s->path, s->argv, s->envp);
    s->err = errno;
    _exit(127);
}

/* kal_spawn's path for flags 0, no cwd, no cleanup paths and three descriptors (see kal_spawn.h). */
static pid_t spawn_stdio(const char *path, char *const argv[], char *const envp[],
                         int in_fd, int out_fd, int err_fd) {
    int sources[3] = {in_fd, out_fd, err_fd};
    struct stdio_spawn s = {path, argv, envp, 0, 0};
    pthread_mutex_lock(&stdio_spawn_lock);
    reserve_stdio_slots();
    if (stdio_slots[0] < 0 || stdio_slots[1] < 0 || stdio_slots[2] < 0) {
        pthread_mutex_unlock(&stdio_spawn_lock);
        return -EMFILE;
    }
    int placed = 0;
    int err = 0;
    for (; placed < 3; placed++) {
        if (dup3(sources[placed], stdio_slots[placed], O_CLOEXEC) < 0) { err = errno; break; }
        if (stdio_slots[placed] > s.top) s.top = stdio_slots[placed];
    }
    pid_t pid = -1;
    if (!err) {
        /* Every signal blocked while the child runs on our memory: no handler of ours may run on
         * its stack (the child unblocks before exec). */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pid = clone(stdio_spawn_child, stdio_spawn_stack + sizeof(stdio_spawn_stack),
                    CLONE_VM | CLONE_VFORK | CLONE_FILES | SIGCHLD, &s);
        if (pid < 0) err = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    /* Back to /dev/null: the slots must not keep the child's ends open (EOF detection). */
    int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    for (int i = 0; i < placed; i++) {
        if (null_fd >= 0) dup3(null_fd, stdio_slots[i], O_CLOEXEC);
    }
    if (null_fd >= 0) close(null_fd);
    pthread_mutex_unlock(&stdio_spawn_lock);
    if (err) return -err;
    if (s.err) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        return -s.err;
    }
    return pid;
}

pid_t kal_spawn(const char *path, char *const argv[], char *const envp[], const int *fds, int nfds,
                const char *cwd, int flags, char *const cleanup_paths[]) {
    if (flags == 0 && cwd == NULL && (cleanup_paths == NULL || cleanup_paths[0] == NULL) && nfds == 3)
        return spawn_stdio(path, argv, envp, fds[0], fds[1], fds[2]);
    int report[2];
    pid_t parent = getpid();
    pid_t pid = kal_fork_with_report_pipe(report);
    if (pid < 0) return pid;
    if (pid == 0) {
        if (flags & KAL_SPAWN_GUARDIAN)
            run_guardian(path, argv, envp, fds, nfds, cwd, flags, cleanup_paths, report[1], parent);
        exec_program(path, argv, envp, fds, nfds, cwd, flags, report[1], parent, 1);
    }
    close(report[1]);
    int child_errno = 0;
    ssize_t n;
    do { n = read(report[0], &child_errno, sizeof(child_errno)); } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof(child_errno)) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        return -(child_errno ? child_errno : ECHILD);
    }
    return pid;
}

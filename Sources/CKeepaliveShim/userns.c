#define _GNU_SOURCE
#include "kal_userns.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include "shim_private.h"

static int write_proc_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int err = n == (ssize_t)len ? 0 : (n < 0 ? -errno : -EIO);
    close(fd);
    return err;
}

/* "0 <id> 1" without snprintf: kal_userns_try runs this in a child forked from a threaded process. */
static void format_map(char *out, unsigned id) {
    char digits[12];
    int n = 0;
    do { digits[n++] = (char)('0' + id % 10); id /= 10; } while (id);
    *out++ = '0';
    *out++ = ' ';
    while (n) *out++ = digits[--n];
    *out++ = ' ';
    *out++ = '1';
    *out = '\0';
}

int kal_userns_enter(int flags, int drop_to_uid, int *step) {
    *step = 0;
    if (drop_to_uid >= 0) {
        if (setgroups(0, NULL) != 0) { *step = KAL_USERNS_STEP_SETGROUPS; return -errno; }
        if (setgid((gid_t)drop_to_uid) != 0) { *step = KAL_USERNS_STEP_SETGID; return -errno; }
        if (setuid((uid_t)drop_to_uid) != 0) { *step = KAL_USERNS_STEP_SETUID; return -errno; }
    }
    uid_t uid = geteuid();
    gid_t gid = getegid();
    /* After a uid change /proc/self is root-owned unless the process is dumpable again. */
    (void)prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
    if (unshare(flags) != 0) { *step = KAL_USERNS_STEP_UNSHARE; return -errno; }
    int err = write_proc_file("/proc/self/setgroups", "deny");
    if (err < 0 && err != -ENOENT) { *step = KAL_USERNS_STEP_DENY_SETGROUPS; return err; }
    char map[64];
    format_map(map, (unsigned)uid);
    if ((err = write_proc_file("/proc/self/uid_map", map)) < 0) { *step = KAL_USERNS_STEP_UID_MAP; return err; }
    format_map(map, (unsigned)gid);
    if ((err = write_proc_file("/proc/self/gid_map", map)) < 0) { *step = KAL_USERNS_STEP_GID_MAP; return err; }
    return 0;
}

int kal_userns_try(int flags, int drop_to_uid, int *step) {
    int report[2];
    *step = 0;
    pid_t pid = kal_fork_with_report_pipe(report);
    if (pid < 0) return pid;
    if (pid == 0) {
        close(report[0]);
        int result[2];
        result[1] = kal_userns_enter(flags, drop_to_uid, &result[0]);
        (void)!write(report[1], result, sizeof(result));
        _exit(0);
    }
    close(report[1]);
    int result[2] = {0, -EPIPE};
    ssize_t n;
    do { n = read(report[0], result, sizeof(result)); } while (n < 0 && errno == EINTR);
    close(report[0]);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
    if (n != (ssize_t)sizeof(result)) return -EPIPE;
    *step = result[0];
    return result[1];
}

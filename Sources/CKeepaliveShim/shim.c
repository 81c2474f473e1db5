#define _GNU_SOURCE
#include "kal_shim.h"

#include <errno.h>
#include <stdio.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/reboot.h>
#include <sys/resource.h>
#include <sys/vfs.h>
#include <sys/mman.h>
#include <grp.h>
#include <linux/magic.h>
#include <fcntl.h>
#include <signal.h>
#include <pthread.h>
#include <stddef.h>
#include <cpuid.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/ptrace.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/net_namespace.h>
#include <poll.h>
#include <linux/pkt_sched.h>
#include <netlink/netlink.h>
#include <netlink/msg.h>
#include <netlink/attr.h>
#include <netlink/socket.h>
#include <netlink/handlers.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif
#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef TCA_NETEM_PRNG_SEED
#define TCA_NETEM_PRNG_SEED 14  /* after TCA_NETEM_SLOT_DIST (13) in Linux >= 6.3 */
#endif

const int KAL_CLONE_NEWNET = CLONE_NEWNET;
const int KAL_CLONE_NEWNS = CLONE_NEWNS;
const int KAL_CLONE_NEWUSER = CLONE_NEWUSER;

int kal_unshare(int flags) { return unshare(flags); }
int kal_setns(int fd, int nstype) { return setns(fd, nstype); }
pid_t kal_gettid(void) { return (pid_t)syscall(SYS_gettid); }
int kal_set_parent_death_signal(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }
int kal_set_dumpable(void) { return prctl(PR_SET_DUMPABLE, 1, 0, 0, 0); }

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

/* pipe2(report, O_CLOEXEC), then fork(): the child's pid (0 in the child), or -errno with the pipe
 * closed. The child reports a failure through report[1] before exec; exec closes it (EOF). */
static pid_t fork_with_report_pipe(int report[2]) {
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

int kal_userns_try(int flags, int drop_to_uid, int *step) {
    int report[2];
    *step = 0;
    pid_t pid = fork_with_report_pipe(report);
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

int kal_memfd_create(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

/* One unnamed inode (O_TMPFILE in the placeholder directory) per process; every placeholder is a
 * hard link to it. See kal_placeholder_create in kal_shim.h. */
static pthread_mutex_t placeholder_lock = PTHREAD_MUTEX_INITIALIZER;
static int placeholder_anchor = -1;

int kal_placeholder_create(const char *dir, const char *path) {
    pthread_mutex_lock(&placeholder_lock);
    for (int attempt = 0; attempt < 2; attempt++) {
        if (placeholder_anchor < 0) {
            placeholder_anchor = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0);
            if (placeholder_anchor < 0) break;  /* no O_TMPFILE here: plain files below */
        }
        char proc[48];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", placeholder_anchor);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW) == 0) {
            pthread_mutex_unlock(&placeholder_lock);
            return 0;
        }
        if (errno == EEXIST) {
            pthread_mutex_unlock(&placeholder_lock);
            errno = EEXIST;
            return -1;
        }
        /* ENOENT: every name of the anchor was removed (a linked O_TMPFILE inode cannot be
         * linked again at nlink 0); or no /proc: start over with a fresh anchor, then give up. */
        close(placeholder_anchor);
        placeholder_anchor = -1;
    }
    pthread_mutex_unlock(&placeholder_lock);
    int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0);
    if (fd < 0) return -1;
    close(fd);
    return 0;
}

/* --- kal_netns_cleanup_barrier (see kal_shim.h) --- */

struct kal_netns_thread_job { int want_socket; int fd; int err; };

/* On a thread of its own (the caller's network namespace stays as it was): a new network
 * namespace, then either a NETLINK_ROUTE socket in it (the socket keeps it alive) or an fd of it. */
static void *kal_netns_thread(void *arg) {
    struct kal_netns_thread_job *job = arg;
    if (unshare(CLONE_NEWNET) != 0) { job->err = errno; return NULL; }
    job->fd = job->want_socket
        ? socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)
        : open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (job->fd < 0) job->err = errno;
    return NULL;
}

static int kal_netns_on_thread(int want_socket) {
    struct kal_netns_thread_job job = { want_socket, -1, 0 };
    pthread_t thread;
    int rc = pthread_create(&thread, NULL, kal_netns_thread, &job);
    if (rc != 0) { errno = rc; return -1; }
    pthread_join(thread, NULL);
    if (job.fd < 0) { errno = job.err; return -1; }
    return job.fd;
}

/* Milliseconds until `deadline_ns` (CLOCK_MONOTONIC), rounded up so a wait never ends early. */
static int kal_ms_left(int64_t deadline_ns) {
    int64_t left = deadline_ns - kal_monotonic_ns();
    return left <= 0 ? 0 : (int)((left + 999999) / 1000000);
}

/* One RTM_*NSID request: the namespace by fd, and an id where nsid != INT32_MIN. */
static int kal_nsid_send(int sock, int type, uint32_t seq, int nsfd, int32_t nsid) {
    struct {
        struct nlmsghdr h;
        struct rtgenmsg g;
        char pad[NLMSG_ALIGN(sizeof(struct rtgenmsg)) - sizeof(struct rtgenmsg)];
        char attrs[2 * NLA_ALIGN(NLA_HDRLEN + 4)];
    } req;
    memset(&req, 0, sizeof req);
    size_t len = NLMSG_LENGTH(NLMSG_ALIGN(sizeof(struct rtgenmsg)));
    struct nlattr *a = (struct nlattr *)((char *)&req + len);
    a->nla_type = NETNSA_FD; a->nla_len = NLA_HDRLEN + 4;
    memcpy((char *)a + NLA_HDRLEN, &(uint32_t){(uint32_t)nsfd}, 4);
    len += NLA_ALIGN(a->nla_len);
    if (nsid != INT32_MIN) {
        a = (struct nlattr *)((char *)&req + len);
        a->nla_type = NETNSA_NSID; a->nla_len = NLA_HDRLEN + 4;
        memcpy((char *)a + NLA_HDRLEN, &nsid, 4);
        len += NLA_ALIGN(a->nla_len);
    }
    req.h.nlmsg_len = (uint32_t)len;
    req.h.nlmsg_type = (uint16_t)type;
    req.h.nlmsg_flags = NLM_F_REQUEST | (type == RTM_NEWNSID ? NLM_F_ACK : 0);
    req.h.nlmsg_seq = seq;
    req.g.rtgen_family = AF_UNSPEC;
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    return sendto(sock, &req, len, 0, (struct sockaddr *)&kernel, sizeof kernel) == (ssize_t)len ? 0 : -errno;
}

static int32_t kal_nsid_attr(const struct nlmsghdr *h) {
    const char *p = (const char *)NLMSG_DATA(h) + NLMSG_ALIGN(sizeof(struct rtgenmsg));
    const char *end = (const char *)h + h->nlmsg_len;
    while (p + NLA_HDRLEN <= end) {
        const struct nlattr *a = (const struct nlattr *)p;
        if (a->nla_len < NLA_HDRLEN || p + a->nla_len > end) break;
        if ((a->nla_type & NLA_TYPE_MASK) == NETNSA_NSID && a->nla_len >= NLA_HDRLEN + 4) {
            int32_t v; memcpy(&v, p + NLA_HDRLEN, 4); return v;
        }
        p += NLA_ALIGN(a->nla_len);
    }
    return INT32_MIN;
}

/* Reads until `want` says done (returns 1) or fails (<0), or the deadline passes (-ETIMEDOUT). */
static int kal_nsid_recv(int sock, int64_t deadline,
                         int (*want)(const struct nlmsghdr *, void *), void *ctx) {
    char buf[8192] __attribute__((aligned(4)));
    for (;;) {
        struct pollfd pfd = { sock, POLLIN, 0 };
        int n = poll(&pfd, 1, kal_ms_left(deadline));
        if (n < 0) { if (errno == EINTR) continue; return -errno; }
        if (n == 0) return -ETIMEDOUT;
        ssize_t got = recv(sock, buf, sizeof buf, 0);
        if (got < 0) { if (errno == EINTR) continue; return -errno; }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)got); h = NLMSG_NEXT(h, got)) {
            int r = want(h, ctx);
            if (r != 0) return r;
        }
    }
}

struct kal_nsid_wait { uint32_t seq; int32_t nsid; };

static int kal_want_ack(const struct nlmsghdr *h, void *ctx) {
    struct kal_nsid_wait *w = ctx;
    if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_seq != w->seq) return 0;
    int err = ((const struct nlmsgerr *)NLMSG_DATA(h))->error;
    return err == 0 ? 1 : err;
}

static int kal_want_id(const struct nlmsghdr *h, void *ctx) {
    struct kal_nsid_wait *w = ctx;
    if (h->nlmsg_seq != w->seq) return 0;
    if (h->nlmsg_type == NLMSG_ERROR) { int err = ((const struct nlmsgerr *)NLMSG_DATA(h))->error; return err ? err : -EPROTO; }
    if (h->nlmsg_type != RTM_NEWNSID) return 0;
    w->nsid = kal_nsid_attr(h);
    return w->nsid >= 0 ? 1 : -EPROTO;
}

static int kal_want_delete(const struct nlmsghdr *h, void *ctx) {
    struct kal_nsid_wait *w = ctx;
    return h->nlmsg_type == RTM_DELNSID && kal_nsid_attr(h) == w->nsid;
}

int kal_netns_cleanup_barrier(int timeout_ms, int *step) {
    int64_t deadline = kal_monotonic_ns() + (int64_t)timeout_ms * 1000000;

    *step = 1;
    int sock = kal_netns_on_thread(1);
    if (sock < 0) return -errno;
    int rc = 0;
    struct sockaddr_nl local = { .nl_family = AF_NETLINK };
    int group = RTNLGRP_NSID;
    if (bind(sock, (struct sockaddr *)&local, sizeof local) != 0
        || setsockopt(sock, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) != 0) {
        rc = -errno;
        goto out;
    }
    for (uint32_t round = 0; round < 2 && rc == 0; round++) {
        *step = 2;
        int sentinel = kal_netns_on_thread(0);
        if (sentinel < 0) { rc = -errno; break; }
        struct kal_nsid_wait w = { 2 * round + 1, -1 };
        *step = 3;
        rc = kal_nsid_send(sock, RTM_NEWNSID, w.seq, sentinel, NETNSA_NSID_NOT_ASSIGNED);
        if (rc == 0) rc = kal_nsid_recv(sock, deadline, kal_want_ack, &w);
        if (rc == 1) {
            *step = 4;
            w.seq++;
            rc = kal_nsid_send(sock, RTM_GETNSID, w.seq, sentinel, INT32_MIN);
            if (rc == 0) rc = kal_nsid_recv(sock, deadline, kal_want_id, &w);
        }
        close(sentinel);  /* its last reference: the kernel queues its cleanup */
        if (rc != 1) { if (rc == 0) rc = -EPROTO; break; }
        *step = 5;
        rc = kal_nsid_recv(sock, deadline, kal_want_delete, &w);
        rc = rc == 1 ? 0 : rc;
    }
out:
    close(sock);
    return rc;
}

int kal_netfilter_socket_check(void) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (fd < 0) return -errno;
    close(fd);
    return 0;
}

struct nl_sock *kal_nl_socket_alloc_quiet(void) {
    nl_debug = 0;
    struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
    if (!cb) return NULL;
    struct nl_sock *sk = nl_socket_alloc_cb(cb);
    nl_cb_put(cb);   /* the socket holds its own reference */
    return sk;
}

uint32_t kal_tc_handle(uint32_t major, uint32_t minor) { return TC_H_MAKE(major << 16, minor); }
uint32_t kal_tc_h_root(void) { return TC_H_ROOT; }

static int kal_error_handler(struct sockaddr_nl *nla, struct nlmsgerr *err, void *arg) {
    (void)nla;
    struct kal_nl_error *out = arg;
    out->kernel_errno = -err->error;
    out->extack[0] = '\0';
    /* The nlmsgerr sits right after the NLMSG_ERROR header. */
    struct nlmsghdr *hdr = (struct nlmsghdr *)((char *)err - NLMSG_HDRLEN);
    if (hdr->nlmsg_flags & NLM_F_ACK_TLVS) {
        size_t offset = sizeof(struct nlmsgerr);
        if (!(hdr->nlmsg_flags & NLM_F_CAPPED))
            offset += err->msg.nlmsg_len - NLMSG_HDRLEN;
        size_t total = hdr->nlmsg_len - NLMSG_HDRLEN;
        if (offset < total) {
            struct nlattr *attrs = (struct nlattr *)((char *)err + offset);
            int remaining = (int)(total - offset);
            struct nlattr *a;
            int rem;
            nla_for_each_attr(a, attrs, remaining, rem) {
                if (nla_type(a) == NLMSGERR_ATTR_MSG) {
                    strncpy(out->extack, nla_data(a), sizeof(out->extack) - 1);
                    out->extack[sizeof(out->extack) - 1] = '\0';
                }
            }
        }
    }
    return NL_STOP;
}

int kal_nl_capture_errors(struct nl_sock *sk, struct kal_nl_error *out) {
    int one = 1;
    memset(out, 0, sizeof(*out));
    /* Older kernels lack extack: the errno is still captured, so a failure here is not fatal. */
    (void)setsockopt(nl_socket_get_fd(sk), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
    return nl_socket_modify_err_cb(sk, NL_CB_CUSTOM, kal_error_handler, out);
}

int kal_netem_append_seed(void *msgp, uint64_t seed) {
    struct nl_msg *msg = msgp;
    struct nlmsghdr *hdr = nlmsg_hdr(msg);
    /* netem's TCA_OPTIONS is a struct tc_netem_qopt followed by attributes; libnl writes it last,
     * so the seed can be appended at the tail and TCA_OPTIONS grown to cover it. */
    struct nlattr *opts = nlmsg_find_attr(hdr, sizeof(struct tcmsg), TCA_OPTIONS);
    if (!opts) return -NLE_MISSING_ATTR;
    char *tail = (char *)hdr + NLMSG_ALIGN(hdr->nlmsg_len);
    char *end = (char *)opts + NLA_ALIGN(opts->nla_len);
    if (end != tail) {
        /* libnl 3.7 grows nlmsg_len a second time by the size of netem's nested attributes (loss
         * correlation, reorder) when it stretches TCA_OPTIONS over them: the bytes past TCA_OPTIONS
         * are then zeros, not attributes. Anything else is a message we do not understand. */
        if (end > tail) return -NLE_INVAL;
        for (char *p = end; p < tail; p++) if (*p) return -NLE_INVAL;
        hdr->nlmsg_len = (uint32_t)(end - (char *)hdr);
    }
    int err = nla_put_u64(msg, TCA_NETEM_PRNG_SEED, seed);
    if (err < 0) return err;
    hdr = nlmsg_hdr(msg);
    opts->nla_len = (uint16_t)((char *)hdr + hdr->nlmsg_len - (char *)opts);
    return 0;
}

static int64_t clock_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
int64_t kal_monotonic_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
int64_t kal_realtime_ns(void) { return clock_ns(CLOCK_REALTIME); }

/* ---- Backends ---- */

#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif

/* UML 6.1 saves guest FP state with PTRACE_{GET,SET}REGSET NT_X86_XSTATE and a fixed 832-byte
 * buffer; hosts whose XSAVE area is larger (AVX-512, AMX) reject the SET with EFAULT and the guest's
 * first process dies. With the request failing as "unsupported", UML falls back to
 * PTRACE_{GET,SET}FPREGS (x87 + SSE). Everything else passes. */
static int install_xstate_filter(void) {
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_ptrace, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PTRACE_GETREGSET, 1, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PTRACE_SETREGSET, 0, 3),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NT_X86_XSTATE, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENODEV),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = { .len = sizeof(filter) / sizeof(filter[0]), .filter = filter };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program, 0, 0);
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
    if ((flags & KAL_SPAWN_HIDE_PTRACE_XSTATE) && install_xstate_filter() != 0) child_fail(report_fd);
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

/* kal_spawn's path for flags 0, no cwd, no cleanup paths and three descriptors (see kal_shim.h). */
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
    pid_t pid = fork_with_report_pipe(report);
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

int kal_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }


int kal_is_tmpfs(const char *path) {
    struct statfs fs;
    if (statfs(path, &fs) != 0) return -1;
    return fs.f_type == TMPFS_MAGIC ? 1 : 0;
}

int kal_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

uint32_t kal_host_xsave_size(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & bit_OSXSAVE)) return 0;
    if (!__get_cpuid_count(0xD, 0, &eax, &ebx, &ecx, &edx)) return 0;
    return ebx;
}

int kal_finit_module(int fd, const char *params, int flags) {
    return (int)syscall(SYS_finit_module, fd, params ? params : "", flags);
}

int kal_power_off(void) {
    sync();
    return reboot(RB_POWER_OFF);
}

/* ---- Application peers ---- */

#include <linux/sock_diag.h>
#include <linux/inet_diag.h>
#include <linux/rtnetlink.h>

int kal_pidfd_open(pid_t pid, unsigned int flags) {
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, flags);
#else
    (void)pid; (void)flags;
    errno = ENOSYS;
    return -1;
#endif
}
int kal_pidfd_getfd(int pidfd, int targetfd, unsigned int flags) {
    return (int)syscall(SYS_pidfd_getfd, pidfd, targetfd, flags);
}

static int get_int_opt(int fd, int level, int name) {
    int v = 0;
    socklen_t len = sizeof(v);
    return getsockopt(fd, level, name, &v, &len) == 0 ? v : -1;
}

int kal_read_sockopts(int fd, struct kal_sockopts *out) {
    out->so_keepalive = get_int_opt(fd, SOL_SOCKET, SO_KEEPALIVE);
    out->keepidle = get_int_opt(fd, IPPROTO_TCP, TCP_KEEPIDLE);
    out->keepintvl = get_int_opt(fd, IPPROTO_TCP, TCP_KEEPINTVL);
    out->keepcnt = get_int_opt(fd, IPPROTO_TCP, TCP_KEEPCNT);
    out->user_timeout_ms = get_int_opt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT);
    return 0;
}

int kal_tcp_diag_dump(struct kal_diag_entry *out, int max) {
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) return -errno;
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } request;
    memset(&request, 0, sizeof(request));
    request.nlh.nlmsg_len = sizeof(request);
    request.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    request.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    request.nlh.nlmsg_seq = 1;
    request.req.sdiag_family = AF_INET;
    request.req.sdiag_protocol = IPPROTO_TCP;
    request.req.idiag_ext = 1 << (INET_DIAG_INFO - 1);
    request.req.idiag_states = ~0U;
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    if (sendto(fd, &request, sizeof(request), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    static __thread char buf[65536];
    int count = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            return -e;
        }
        if (n == 0) break;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) { close(fd); return count; }
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *err = NLMSG_DATA(h);
                close(fd);
                return err->error ? err->error : -EIO;
            }
            if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
            struct inet_diag_msg *msg = NLMSG_DATA(h);
            if (count < max) {
                struct kal_diag_entry *e = &out[count];
                memset(e, 0, sizeof(*e));
                e->state = msg->idiag_state;
                e->sport = ntohs(msg->id.idiag_sport);
                e->dport = ntohs(msg->id.idiag_dport);
                e->saddr = msg->id.idiag_src[0];
                e->daddr = msg->id.idiag_dst[0];
                e->inode = msg->idiag_inode;
                e->uid = msg->idiag_uid;
                int len = h->nlmsg_len - NLMSG_LENGTH(sizeof(*msg));
                for (struct rtattr *a = (struct rtattr *)(msg + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
                    if (a->rta_type == INET_DIAG_INFO) {
                        struct tcp_info ti;
                        memset(&ti, 0, sizeof(ti));
                        size_t l = RTA_PAYLOAD(a) < sizeof(ti) ? RTA_PAYLOAD(a) : sizeof(ti);
                        memcpy(&ti, RTA_DATA(a), l);
                        kal_tcp_info_from(&e->info, &ti);
                        e->has_info = 1;
                    }
                }
            }
            count++;
        }
    }
    close(fd);
    return count;
}

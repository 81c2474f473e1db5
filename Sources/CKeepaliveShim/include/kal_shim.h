#ifndef KAL_SHIM_H
#define KAL_SHIM_H

#include <stdint.h>
#include <sys/types.h>

#include <kal_tcp_info.h>

struct nl_sock;

/* Namespace flags that Swift's Glibc module does not export. */
extern const int KAL_CLONE_NEWNET;
extern const int KAL_CLONE_NEWNS;
extern const int KAL_CLONE_NEWUSER;

/* The corresponding C functions are unshare(2) and setns(2). They return -1 and set errno on failure. */
int kal_unshare(int flags);
int kal_setns(int fd, int nstype);
/* gettid(2) through syscall(), which is variadic and so not callable from Swift. */
pid_t kal_gettid(void);
/* prctl(PR_SET_PDEATHSIG, sig): the child dies with its parent, so no peer outlives the harness. */
int kal_set_parent_death_signal(int sig);
/* prctl(PR_SET_DUMPABLE, 1): after a uid change /proc/self becomes root-owned unless dumpable,
 * and uid_map could not be written. */
int kal_set_dumpable(void);

/* ---- User namespaces: the routes into one (UserNamespaceRoute.swift) ---- */

/* The step of kal_userns_enter that failed. */
#define KAL_USERNS_STEP_SETGROUPS 1      /* setgroups(0, NULL) before the uid change */
#define KAL_USERNS_STEP_SETGID 2
#define KAL_USERNS_STEP_SETUID 3
#define KAL_USERNS_STEP_UNSHARE 4
#define KAL_USERNS_STEP_DENY_SETGROUPS 5 /* writing "deny" to /proc/self/setgroups */
#define KAL_USERNS_STEP_UID_MAP 6
#define KAL_USERNS_STEP_GID_MAP 7

/* With drop_to_uid >= 0: setgroups(0), setgid and setuid to it first (needs CAP_SETGID/CAP_SETUID).
 * Then unshare(flags) (flags include CLONE_NEWUSER) and map the effective uid and gid to 0 inside
 * ("0 <euid> 1", "0 <egid> 1", setgroups denied). Mapping uid 0 needs CAP_SETFCAP since Linux 5.12.
 * Returns 0, or -errno with *step set to the KAL_USERNS_STEP_* that failed. The caller must be
 * single-threaded. */
int kal_userns_enter(int flags, int drop_to_uid, int *step);

/* The same in a forked child that exits right after: a real attempt that leaves the caller as it
 * was. Returns 0 or -errno with *step set (step 0: fork or pipe failed). */
int kal_userns_try(int flags, int drop_to_uid, int *step);

/* memfd_create(name, MFD_CLOEXEC). Returns the fd or -1 with errno. */
int kal_memfd_create(const char *name);

/* Creates the empty file `path` in directory `dir` (as open(O_CREAT|O_EXCL) would: EEXIST if it
 * exists) for a namespace to be bind-mounted on. Made as a hard link to one unnamed O_TMPFILE inode
 * the process keeps open, so no file system inode is allocated and freed per namespace: on ext4,
 * allocating an inode scans past the ones freed recently, which took 13.5 % of the CPU of 1000
 * trials set up at once (3 placeholders each). Falls back to a plain file where O_TMPFILE or
 * /proc is missing. Returns 0, or -1 with errno. Thread-safe. */
int kal_placeholder_create(const char *dir, const char *path);

/* Blocks until the kernel has finished destroying every network namespace whose last reference
 * was dropped before the call (their cleanup runs later, in the kernel's "netns" workqueue, and
 * takes seconds after hundreds of trials). An event, not polling: in a fresh private observer
 * namespace, a sentinel namespace gets an id (RTM_NEWNSID) and is released; the kernel announces
 * RTM_DELNSID when a cleanup batch that holds the sentinel starts. Cleanup batches run one after
 * another, so the second of two sentinels released in turn is announced only once the batch
 * holding everything released earlier has finished. Returns 0; -ETIMEDOUT after `timeout_ms`;
 * else -errno with *step: 1 observer namespace and socket, 2 sentinel namespace, 3 assigning its
 * id, 4 reading it back, 5 waiting for the event. */
int kal_netns_cleanup_barrier(int timeout_ms, int *step);

/* socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER), closed again: 0 when it opens, else -errno.
 * libnftables prints to stderr and exit()s the process when it cannot open this socket. */
int kal_netfilter_socket_check(void);

/* A libnl socket whose callbacks are libnl's quiet defaults whatever NLCB says (NLCB=debug or
 * verbose would make libnl print every message to stderr), with libnl's debug output (NLDBG) off. */
struct nl_sock *kal_nl_socket_alloc_quiet(void);

/* TC_HANDLE(maj, min) is a function-like macro. */
uint32_t kal_tc_handle(uint32_t major, uint32_t minor);
uint32_t kal_tc_h_root(void);

/* The kernel's answer to the last failed netlink request on a socket:
 * libnl maps errno to its own NLE_* codes and drops the extended-ack text, so both are kept here. */
struct kal_nl_error {
    int kernel_errno;      /* positive errno from the kernel's NLMSG_ERROR, 0 if none */
    char extack[256];      /* NLMSGERR_ATTR_MSG, empty if the kernel sent none */
};

/* Enables NETLINK_EXT_ACK on the socket and installs an error callback that fills *out.
 * `out` must outlive the socket. Returns 0 or a negative NLE_* code. */
int kal_nl_capture_errors(struct nl_sock *sk, struct kal_nl_error *out);

/* Appends TCA_NETEM_PRNG_SEED to a netem qdisc add request built by libnl
 * (libnl 3.7 has no setter for it). `msg` is a struct nl_msg *. Returns 0 or a negative NLE_* code. */
int kal_netem_append_seed(void *msg, uint64_t seed);

/* struct kal_tcp_info and kal_tcp_info(): kal_tcp_info.h (CKeepaliveTCPInfo, shared with the lean peer). */

/* CLOCK_MONOTONIC and CLOCK_REALTIME in nanoseconds. */
int64_t kal_monotonic_ns(void);
int64_t kal_realtime_ns(void);

/* ---- Backends: spawning, user-mode-linux guests ---- */

/* Flags for kal_spawn. */
#define KAL_SPAWN_NEW_PROCESS_GROUP 1   /* setpgid(0, 0): the child and its descendants can be killed as a group */
#define KAL_SPAWN_PARENT_DEATH_KILL 2   /* PR_SET_PDEATHSIG SIGKILL: the child dies with the spawning thread */
#define KAL_SPAWN_NO_CORE_DUMP 4        /* RLIMIT_CORE 0: a panicking UML kernel aborts without a core file */
#define KAL_SPAWN_HIDE_PTRACE_XSTATE 8  /* seccomp: ptrace(PTRACE_{GET,SET}REGSET, NT_X86_XSTATE) fails with ENODEV */
/* A guardian process sits between the caller and the program, which gets its own process group.
 * When the program exits, or the guardian gets SIGTERM, or the caller's spawning thread dies
 * (even by SIGKILL: the guardian's parent-death signal is SIGTERM), the guardian SIGKILLs the
 * program's whole group, reaps every member (it is their child subreaper), removes
 * `cleanup_paths` if it was not a normal exit, and exits with the program's status (128 + signal
 * when killed; 128 + SIGTERM when stopped). The returned pid is the guardian's. For programs that
 * leave helper processes behind when killed, such as linux.uml. */
#define KAL_SPAWN_GUARDIAN 16

/* The one way the lab starts a program (Swift: Spawn in KeepaliveLab/Backend/Spawn.swift).
 * Starts `path` with argv/envp and descriptors fds[0..nfds-1] as the child's 0..nfds-1: the child
 * inherits no other descriptor (libpcap's packet sockets and dump files are not CLOEXEC; a peer that
 * inherited another trial's capture socket held it until it exited, then spent an RCU grace period
 * per inherited socket in packet_release), starts with default signal dispositions and an empty
 * signal mask. `cwd` may be NULL; `cleanup_paths` is a NULL-terminated list (or NULL), used with
 * KAL_SPAWN_GUARDIAN only.
 * Returns the pid, or -errno when the child could not be set up or exec failed (a bad path fails
 * here rather than as an exit status).
 *
 * Two mechanisms behind it:
 * - flags 0, cwd NULL, no cleanup paths, nfds 3 (the peers' case): the child shares our memory and
 *   descriptor table (clone CLONE_VM | CLONE_VFORK | CLONE_FILES); the three descriptors are first
 *   placed in three low slots reserved at load time, and close_range(slot+1, ~0, CLOSE_RANGE_UNSHARE)
 *   gives the child a private table holding only the descriptors below that: nothing else is copied
 *   or closed. fork, or posix_spawn with closefrom(3), copies the caller's whole descriptor table into
 *   the child and closes every entry one by one: with 1000 trials at once (~16 000 descriptors) that
 *   was 39 % of the harness's CPU (perf: close_range -> filp_close -> filp_flush). Spawns through
 *   here are serialised (one reserved set of slots, one child stack); each holds the lock for the
 *   clone and the exec only.
 * - otherwise fork + execve; exec failure is reported through a close-on-exec pipe. Only
 *   async-signal-safe calls run between fork and exec (and in the guardian). */
pid_t kal_spawn(const char *path, char *const argv[], char *const envp[], const int *fds, int nfds,
                const char *cwd, int flags, char *const cleanup_paths[]);

/* pipe2(fds, O_CLOEXEC), which Swift's Glibc module lacks. Returns 0 or -1 with errno. */
int kal_pipe_cloexec(int fds[2]);

/* ---- Files (files.c) ---- */
/* fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, length): blocks allocated past the end, the size unchanged. */
int kal_reserve_past_end(int fd, off_t offset, off_t length);
/* fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, ...): gives such blocks back. */
int kal_release_past_end(int fd, off_t offset, off_t length);

/* 1 when `path` is on a tmpfs (statfs f_type TMPFS_MAGIC), 0 when not, -1 with errno on failure. */
int kal_is_tmpfs(const char *path);

/* prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are re-parented to this process, so they can be reaped. */
int kal_set_child_subreaper(void);

/* The size in bytes of the XSAVE area for the features the host enabled in XCR0 (CPUID 0xD.0 EBX), 0 without XSAVE. */
uint32_t kal_host_xsave_size(void);

/* finit_module(2). Returns 0 or -1 with errno. */
int kal_finit_module(int fd, const char *params, int flags);

/* sync(2), then reboot(RB_POWER_OFF): only returns on failure (-1 with errno). */
int kal_power_off(void);

/* ---- Application peers: another process's socket, the namespace's socket table ---- */

/* pidfd_open(2) / pidfd_getfd(2) (Linux >= 5.3 / 5.6). Return a descriptor or -1 with errno
 * (ENOSYS on older kernels, ESRCH when there is no such process). A pidfd polls readable once the
 * process has exited (a zombie counts), so a wait with a deadline can block in poll(2);
 * pidfd_getfd needs ptrace access to the target. */
int kal_pidfd_open(pid_t pid, unsigned int flags);
int kal_pidfd_getfd(int pidfd, int targetfd, unsigned int flags);

/* What a program applied to its socket, read back: -1 in a field when getsockopt failed. */
struct kal_sockopts {
    int so_keepalive;
    int keepidle;
    int keepintvl;
    int keepcnt;
    int user_timeout_ms;
};
/* Fills *out; returns 0. */
int kal_read_sockopts(int fd, struct kal_sockopts *out);

/* One IPv4 TCP socket of the calling thread's network namespace, from a sock_diag (inet_diag) dump. */
struct kal_diag_entry {
    uint8_t state;
    uint8_t has_info;
    uint16_t sport;        /* host byte order */
    uint16_t dport;
    uint32_t saddr;        /* network byte order */
    uint32_t daddr;
    uint32_t inode;
    uint32_t uid;
    struct kal_tcp_info info;   /* INET_DIAG_INFO, when has_info */
};
/* NETLINK_SOCK_DIAG dump of every IPv4 TCP socket (all states) with INET_DIAG_INFO. Writes up to
 * `max` entries and returns how many there were in all (may exceed max), or -errno. */
int kal_tcp_diag_dump(struct kal_diag_entry *out, int max);

#endif

#ifndef KAL_SPAWN_H
#define KAL_SPAWN_H

#include <sys/types.h>

/* ---- Backends: spawning (spawn.c) ---- */

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

#endif

#ifndef KAL_PROCESS_H
#define KAL_PROCESS_H

#include <sys/types.h>

/* ---- Processes: calls Swift's Glibc module lacks or cannot make (process.c) ---- */

/* gettid(2) through syscall(), which is variadic and so not callable from Swift. */
pid_t kal_gettid(void);
/* prctl(PR_SET_PDEATHSIG, sig): the child dies with its parent, so no peer outlives the harness. */
int kal_set_parent_death_signal(int sig);
/* prctl(PR_SET_DUMPABLE, 1): after a uid change /proc/self becomes root-owned unless dumpable,
 * and uid_map could not be written. */
int kal_set_dumpable(void);
/* prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are re-parented to this process, so they can be reaped. */
int kal_set_child_subreaper(void);

/* memfd_create(name, MFD_CLOEXEC). Returns the fd or -1 with errno. */
int kal_memfd_create(const char *name);

/* pipe2(fds, O_CLOEXEC), which Swift's Glibc module lacks. Returns 0 or -1 with errno. */
int kal_pipe_cloexec(int fds[2]);

/* pidfd_open(2) / pidfd_getfd(2) (Linux >= 5.3 / 5.6). Return a descriptor or -1 with errno
 * (ENOSYS on older kernels, ESRCH when there is no such process). A pidfd polls readable once the
 * process has exited (a zombie counts), so a wait with a deadline can block in poll(2);
 * pidfd_getfd needs ptrace access to the target. */
int kal_pidfd_open(pid_t pid, unsigned int flags);
int kal_pidfd_getfd(int pidfd, int targetfd, unsigned int flags);

#endif

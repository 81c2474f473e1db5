#define _GNU_SOURCE
#include "kal_process.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

pid_t kal_gettid(void) { return (pid_t)syscall(SYS_gettid); }
int kal_set_parent_death_signal(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }
int kal_set_dumpable(void) { return prctl(PR_SET_DUMPABLE, 1, 0, 0, 0); }
int kal_set_child_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

int kal_memfd_create(const char *name) { return memfd_create(name, MFD_CLOEXEC); }

int kal_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

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

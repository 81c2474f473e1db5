#ifndef KAL_SHIM_PRIVATE_H
#define KAL_SHIM_PRIVATE_H

/* Shared between the shim's files, not part of the module Swift imports. */

#include <sys/types.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

/* pipe2(report, O_CLOEXEC), then fork() (spawn.c; kal_userns_try uses it too). */
__attribute__((visibility("hidden"))) pid_t kal_fork_with_report_pipe(int report[2]);

/* The seccomp filter behind KAL_SPAWN_HIDE_PTRACE_XSTATE (uml.c): installed in the child before exec. */
__attribute__((visibility("hidden"))) int kal_install_xstate_filter(void);

#endif

#ifndef KAL_UML_H
#define KAL_UML_H

#include <stdint.h>

/* ---- Backends: user-mode-linux guests, the host's side and the guest's (uml.c) ---- */

/* The size in bytes of the XSAVE area for the features the host enabled in XCR0 (CPUID 0xD.0 EBX), 0 without XSAVE. */
uint32_t kal_host_xsave_size(void);

/* 1 when `path` is on a tmpfs (statfs f_type TMPFS_MAGIC), 0 when not, -1 with errno on failure. */
int kal_is_tmpfs(const char *path);

/* finit_module(2). Returns 0 or -1 with errno. */
int kal_finit_module(int fd, const char *params, int flags);

/* sync(2), then reboot(RB_POWER_OFF): only returns on failure (-1 with errno). */
int kal_power_off(void);

#endif

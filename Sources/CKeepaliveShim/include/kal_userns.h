#ifndef KAL_USERNS_H
#define KAL_USERNS_H

/* ---- User namespaces: the routes into one (UserNamespaceRoute.swift; userns.c) ---- */

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

#endif

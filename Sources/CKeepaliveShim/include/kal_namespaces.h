#ifndef KAL_NAMESPACES_H
#define KAL_NAMESPACES_H

/* ---- Namespaces (namespaces.c, netns_cleanup_barrier.c; user namespaces: kal_userns.h) ---- */

/* Namespace flags that Swift's Glibc module does not export. */
extern const int KAL_CLONE_NEWNET;
extern const int KAL_CLONE_NEWNS;
extern const int KAL_CLONE_NEWUSER;

/* The corresponding C functions are unshare(2) and setns(2). They return -1 and set errno on failure. */
int kal_unshare(int flags);
int kal_setns(int fd, int nstype);

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

#endif

#define _GNU_SOURCE
#include "kal_namespaces.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <unistd.h>

const int KAL_CLONE_NEWNET = CLONE_NEWNET;
const int KAL_CLONE_NEWNS = CLONE_NEWNS;
const int KAL_CLONE_NEWUSER = CLONE_NEWUSER;

int kal_unshare(int flags) { return unshare(flags); }
int kal_setns(int fd, int nstype) { return setns(fd, nstype); }

/* One unnamed inode (O_TMPFILE in the placeholder directory) per process; every placeholder is a
 * hard link to it. See kal_placeholder_create in kal_namespaces.h. */
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

#define _GNU_SOURCE
#include "kal_shim.h"

#include <fcntl.h>
#include <linux/falloc.h>

/* Swift's Glibc module does not export fallocate(2) (it needs _GNU_SOURCE). */
int kal_reserve_past_end(int fd, off_t offset, off_t length) {
    return fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, length);
}

int kal_release_past_end(int fd, off_t offset, off_t length) {
    return fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, offset, length);
}

#ifndef KAL_FILES_H
#define KAL_FILES_H

#include <sys/types.h>

/* ---- Files (files.c) ---- */
/* fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, length): blocks allocated past the end, the size unchanged. */
int kal_reserve_past_end(int fd, off_t offset, off_t length);
/* fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, ...): gives such blocks back. */
int kal_release_past_end(int fd, off_t offset, off_t length);

#endif

#ifndef KAL_CLOCKS_H
#define KAL_CLOCKS_H

#include <stdint.h>

/* CLOCK_MONOTONIC and CLOCK_REALTIME in nanoseconds (clocks.c). */
int64_t kal_monotonic_ns(void);
int64_t kal_realtime_ns(void);

#endif

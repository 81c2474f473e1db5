#define _GNU_SOURCE
#include "kal_clocks.h"

#include <time.h>

static int64_t clock_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
int64_t kal_monotonic_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
int64_t kal_realtime_ns(void) { return clock_ns(CLOCK_REALTIME); }

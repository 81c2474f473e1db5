#define _GNU_SOURCE
#include "kal_peer.h"

#include <sched.h>
#include <sys/prctl.h>
#include <time.h>

int kalp_setns_net(int fd) { return setns(fd, CLONE_NEWNET); }
int kalp_parent_death_signal(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }

int64_t kalp_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

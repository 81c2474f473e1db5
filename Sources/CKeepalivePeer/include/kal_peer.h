#ifndef KAL_PEER_H
#define KAL_PEER_H

/* The few calls the lean peer (keepalive-lab-peer) needs that Swift's Glibc module lacks. No
 * libnl, no libpcap: the peer binary links only libc and the Swift core library. */

#include <stdint.h>

/* TCP_INFO: struct kal_tcp_info and kal_tcp_info(), the harness's own (CKeepaliveTCPInfo). */
#include <kal_tcp_info.h>

/* setns(fd, CLONE_NEWNET). Returns 0 or -1 with errno. */
int kalp_setns_net(int fd);
/* prctl(PR_SET_PDEATHSIG, sig). */
int kalp_parent_death_signal(int sig);
/* CLOCK_MONOTONIC in nanoseconds (the clock of every event, capture and harness deadline). */
int64_t kalp_monotonic_ns(void);

#endif

#ifndef KAL_PEER_H
#define KAL_PEER_H

/* The few calls the lean peer (keepalive-lab-peer) needs that Swift's Glibc module lacks. No
 * libnl, no libpcap: the peer binary links only libc and the Swift core library. */

#include <stdint.h>

/* setns(fd, CLONE_NEWNET). Returns 0 or -1 with errno. */
int kalp_setns_net(int fd);
/* prctl(PR_SET_PDEATHSIG, sig). */
int kalp_parent_death_signal(int sig);
/* CLOCK_MONOTONIC in nanoseconds (the clock of every event, capture and harness deadline). */
int64_t kalp_monotonic_ns(void);

/* The fields of struct tcp_info the lab reports (the same as kal_tcp_info). */
struct kalp_tcp_info {
    uint8_t state;
    uint8_t probes;
    uint8_t backoff;
    uint8_t retransmits;
    uint32_t rto_us;
    uint32_t unacked;
    uint32_t lost;
    uint32_t retrans;
    uint32_t total_retrans;
    uint32_t last_data_sent_ms;
    uint32_t last_data_recv_ms;
    uint32_t last_ack_recv_ms;
    uint32_t rtt_us;
    uint32_t rttvar_us;
    uint32_t snd_cwnd;
};
/* getsockopt(TCP_INFO). Returns 0 or -1 with errno. */
int kalp_tcp_info(int fd, struct kalp_tcp_info *out);

#endif

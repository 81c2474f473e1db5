#define _GNU_SOURCE
#include "kal_peer.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>

int kalp_setns_net(int fd) { return setns(fd, CLONE_NEWNET); }
int kalp_parent_death_signal(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }

int64_t kalp_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int kalp_tcp_info(int fd, struct kalp_tcp_info *out) {
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) return -1;
    out->state = ti.tcpi_state;
    out->probes = ti.tcpi_probes;
    out->backoff = ti.tcpi_backoff;
    out->retransmits = ti.tcpi_retransmits;
    out->rto_us = ti.tcpi_rto;
    out->unacked = ti.tcpi_unacked;
    out->lost = ti.tcpi_lost;
    out->retrans = ti.tcpi_retrans;
    out->total_retrans = ti.tcpi_total_retrans;
    out->last_data_sent_ms = ti.tcpi_last_data_sent;
    out->last_data_recv_ms = ti.tcpi_last_data_recv;
    out->last_ack_recv_ms = ti.tcpi_last_ack_recv;
    out->rtt_us = ti.tcpi_rtt;
    out->rttvar_us = ti.tcpi_rttvar;
    out->snd_cwnd = ti.tcpi_snd_cwnd;
    return 0;
}

#include "kal_tcp_info.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>

/* Every field at least as wide as the kernel's, so the copy never truncates (PeerTCPInfo in Swift
 * and the peer's tcp_info event take these widths as they are). */
#define KAL_HOLDS(field, kernel) \
    _Static_assert(sizeof(((struct kal_tcp_info *)0)->field) >= sizeof(((struct tcp_info *)0)->tcpi_##kernel), \
                   #field " is narrower than tcpi_" #kernel)
KAL_HOLDS(state, state);
KAL_HOLDS(probes, probes);
KAL_HOLDS(backoff, backoff);
KAL_HOLDS(retransmits, retransmits);
KAL_HOLDS(rto_us, rto);
KAL_HOLDS(unacked, unacked);
KAL_HOLDS(lost, lost);
KAL_HOLDS(retrans, retrans);
KAL_HOLDS(total_retrans, total_retrans);
KAL_HOLDS(last_data_sent_ms, last_data_sent);
KAL_HOLDS(last_data_recv_ms, last_data_recv);
KAL_HOLDS(last_ack_recv_ms, last_ack_recv);
KAL_HOLDS(rtt_us, rtt);
KAL_HOLDS(rttvar_us, rttvar);
KAL_HOLDS(snd_cwnd, snd_cwnd);

int kal_tcp_info(int fd, struct kal_tcp_info *out) {
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) return -1;
    kal_tcp_info_from(out, &ti);
    return 0;
}

void kal_tcp_info_from(struct kal_tcp_info *out, const struct tcp_info *ti) {
    out->state = ti->tcpi_state;
    out->probes = ti->tcpi_probes;
    out->backoff = ti->tcpi_backoff;
    out->retransmits = ti->tcpi_retransmits;
    out->rto_us = ti->tcpi_rto;
    out->unacked = ti->tcpi_unacked;
    out->lost = ti->tcpi_lost;
    out->retrans = ti->tcpi_retrans;
    out->total_retrans = ti->tcpi_total_retrans;
    out->last_data_sent_ms = ti->tcpi_last_data_sent;
    out->last_data_recv_ms = ti->tcpi_last_data_recv;
    out->last_ack_recv_ms = ti->tcpi_last_ack_recv;
    out->rtt_us = ti->tcpi_rtt;
    out->rttvar_us = ti->tcpi_rttvar;
    out->snd_cwnd = ti->tcpi_snd_cwnd;
}

#ifndef KAL_TCP_INFO_H
#define KAL_TCP_INFO_H

/* The lab's one view of struct tcp_info, in a target of its own so that the harness
 * (CKeepaliveShim: its sockets, sock_diag's INET_DIAG_INFO) and the lean peer (CKeepalivePeer,
 * linked into the static keepalive-lab-peer, libc only) share the definition and the copy. */

#include <stdint.h>

struct tcp_info;

/* Client-side kernel view of a TCP socket: the fields of struct tcp_info the lab reports. */
struct kal_tcp_info {
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
int kal_tcp_info(int fd, struct kal_tcp_info *out);

/* The same fields from a struct tcp_info the kernel handed over otherwise (INET_DIAG_INFO). */
void kal_tcp_info_from(struct kal_tcp_info *out, const struct tcp_info *ti);

#endif

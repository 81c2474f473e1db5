#define _GNU_SOURCE
#include "kal_shim.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/netlink.h>
#include <linux/pkt_sched.h>
#include <netlink/netlink.h>
#include <netlink/msg.h>
#include <netlink/attr.h>
#include <netlink/socket.h>
#include <netlink/handlers.h>

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif
#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef TCA_NETEM_PRNG_SEED
#define TCA_NETEM_PRNG_SEED 13
#endif

const int KAL_CLONE_NEWNET = CLONE_NEWNET;
const int KAL_CLONE_NEWNS = CLONE_NEWNS;
const int KAL_CLONE_NEWUSER = CLONE_NEWUSER;

int kal_unshare(int flags) { return unshare(flags); }
int kal_setns(int fd, int nstype) { return setns(fd, nstype); }
pid_t kal_gettid(void) { return (pid_t)syscall(SYS_gettid); }
int kal_set_parent_death_signal(int sig) { return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0); }
int kal_set_dumpable(void) { return prctl(PR_SET_DUMPABLE, 1, 0, 0, 0); }

uint32_t kal_tc_handle(uint32_t major, uint32_t minor) { return TC_H_MAKE(major << 16, minor); }
uint32_t kal_tc_h_root(void) { return TC_H_ROOT; }

static int kal_error_handler(struct sockaddr_nl *nla, struct nlmsgerr *err, void *arg) {
    (void)nla;
    struct kal_nl_error *out = arg;
    out->kernel_errno = -err->error;
    out->extack[0] = '\0';
    /* The nlmsgerr sits right after the NLMSG_ERROR header. */
    struct nlmsghdr *hdr = (struct nlmsghdr *)((char *)err - NLMSG_HDRLEN);
    if (hdr->nlmsg_flags & NLM_F_ACK_TLVS) {
        size_t offset = sizeof(struct nlmsgerr);
        if (!(hdr->nlmsg_flags & NLM_F_CAPPED))
            offset += err->msg.nlmsg_len - NLMSG_HDRLEN;
        size_t total = hdr->nlmsg_len - NLMSG_HDRLEN;
        if (offset < total) {
            struct nlattr *attrs = (struct nlattr *)((char *)err + offset);
            int remaining = (int)(total - offset);
            struct nlattr *a;
            int rem;
            nla_for_each_attr(a, attrs, remaining, rem) {
                if (nla_type(a) == NLMSGERR_ATTR_MSG) {
                    strncpy(out->extack, nla_data(a), sizeof(out->extack) - 1);
                    out->extack[sizeof(out->extack) - 1] = '\0';
                }
            }
        }
    }
    return NL_STOP;
}

int kal_nl_capture_errors(struct nl_sock *sk, struct kal_nl_error *out) {
    int one = 1;
    memset(out, 0, sizeof(*out));
    /* Older kernels lack extack: the errno is still captured, so a failure here is not fatal. */
    (void)setsockopt(nl_socket_get_fd(sk), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
    return nl_socket_modify_err_cb(sk, NL_CB_CUSTOM, kal_error_handler, out);
}

int kal_netem_append_seed(void *msgp, uint64_t seed) {
    struct nl_msg *msg = msgp;
    struct nlmsghdr *hdr = nlmsg_hdr(msg);
    /* netem's TCA_OPTIONS is a struct tc_netem_qopt followed by attributes; libnl writes it last,
     * so the seed can be appended at the tail and TCA_OPTIONS grown to cover it. */
    struct nlattr *opts = nlmsg_find_attr(hdr, sizeof(struct tcmsg), TCA_OPTIONS);
    if (!opts) return -NLE_MISSING_ATTR;
    char *tail = (char *)hdr + NLMSG_ALIGN(hdr->nlmsg_len);
    if ((char *)opts + NLA_ALIGN(opts->nla_len) != tail) return -NLE_INVAL;
    int err = nla_put_u64(msg, TCA_NETEM_PRNG_SEED, seed);
    if (err < 0) return err;
    hdr = nlmsg_hdr(msg);
    opts->nla_len = (uint16_t)((char *)hdr + hdr->nlmsg_len - (char *)opts);
    return 0;
}

int kal_tcp_info(int fd, struct kal_tcp_info *out) {
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

static int64_t clock_ns(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
int64_t kal_monotonic_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
int64_t kal_realtime_ns(void) { return clock_ns(CLOCK_REALTIME); }

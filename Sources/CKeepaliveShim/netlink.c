#define _GNU_SOURCE
#include "kal_netlink.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/pkt_sched.h>
#include <netlink/netlink.h>
#include <netlink/msg.h>
#include <netlink/attr.h>
#include <netlink/socket.h>
#include <netlink/handlers.h>

#include "shim_private.h"

#ifndef NETLINK_EXT_ACK
#define NETLINK_EXT_ACK 11
#endif
#ifndef TCA_NETEM_PRNG_SEED
#define TCA_NETEM_PRNG_SEED 14  /* after TCA_NETEM_SLOT_DIST (13) in Linux >= 6.3 */
#endif

_Static_assert(sizeof(((struct kal_nl_error *)0)->extack) == 256,
               "NetlinkSocket.swift reads extack as 256 CChars");

int kal_netfilter_socket_check(void) {
    int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER);
    if (fd < 0) return -errno;
    close(fd);
    return 0;
}

struct nl_sock *kal_nl_socket_alloc_quiet(void) {
    nl_debug = 0;
    struct nl_cb *cb = nl_cb_alloc(NL_CB_DEFAULT);
    if (!cb) return NULL;
    struct nl_sock *sk = nl_socket_alloc_cb(cb);
    nl_cb_put(cb);   /* the socket holds its own reference */
    return sk;
}

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
    char *end = (char *)opts + NLA_ALIGN(opts->nla_len);
    if (end != tail) {
        /* libnl 3.7 grows nlmsg_len a second time by the size of netem's nested attributes (loss
         * correlation, reorder) when it stretches TCA_OPTIONS over them: the bytes past TCA_OPTIONS
         * are then zeros, not attributes. Anything else is a message we do not understand. */
        if (end > tail) return -NLE_INVAL;
        for (char *p = end; p < tail; p++) if (*p) return -NLE_INVAL;
        hdr->nlmsg_len = (uint32_t)(end - (char *)hdr);
    }
    int err = nla_put_u64(msg, TCA_NETEM_PRNG_SEED, seed);
    if (err < 0) return err;
    hdr = nlmsg_hdr(msg);
    opts->nla_len = (uint16_t)((char *)hdr + hdr->nlmsg_len - (char *)opts);
    return 0;
}

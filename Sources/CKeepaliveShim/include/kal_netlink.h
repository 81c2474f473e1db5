#ifndef KAL_NETLINK_H
#define KAL_NETLINK_H

#include <stdint.h>

/* ---- Netlink: libnl and libnftables the way the lab needs them (netlink.c) ---- */

struct nl_sock;

/* socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER), closed again: 0 when it opens, else -errno.
 * libnftables prints to stderr and exit()s the process when it cannot open this socket. */
int kal_netfilter_socket_check(void);

/* A libnl socket whose callbacks are libnl's quiet defaults whatever NLCB says (NLCB=debug or
 * verbose would make libnl print every message to stderr), with libnl's debug output (NLDBG) off. */
struct nl_sock *kal_nl_socket_alloc_quiet(void);

/* TC_HANDLE(maj, min) is a function-like macro. */
uint32_t kal_tc_handle(uint32_t major, uint32_t minor);
uint32_t kal_tc_h_root(void);

/* The kernel's answer to the last failed netlink request on a socket:
 * libnl maps errno to its own NLE_* codes and drops the extended-ack text, so both are kept here. */
struct kal_nl_error {
    int kernel_errno;      /* positive errno from the kernel's NLMSG_ERROR, 0 if none */
    char extack[256];      /* NLMSGERR_ATTR_MSG, empty if the kernel sent none */
};

/* Enables NETLINK_EXT_ACK on the socket and installs an error callback that fills *out.
 * `out` must outlive the socket. Returns 0 or a negative NLE_* code. */
int kal_nl_capture_errors(struct nl_sock *sk, struct kal_nl_error *out);

/* Appends TCA_NETEM_PRNG_SEED to a netem qdisc add request built by libnl
 * (libnl 3.7 has no setter for it). `msg` is a struct nl_msg *. Returns 0 or a negative NLE_* code. */
int kal_netem_append_seed(void *msg, uint64_t seed);

#endif

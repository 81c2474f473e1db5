#ifndef KAL_SHIM_H
#define KAL_SHIM_H

#include <stdint.h>
#include <sys/types.h>

struct nl_sock;

/* Namespace flags that Swift's Glibc module does not export. */
extern const int KAL_CLONE_NEWNET;
extern const int KAL_CLONE_NEWNS;
extern const int KAL_CLONE_NEWUSER;

/* The corresponding C functions are unshare(2) and setns(2). They return -1 and set errno on failure. */
int kal_unshare(int flags);
int kal_setns(int fd, int nstype);
/* gettid(2) through syscall(), which is variadic and so not callable from Swift. */
pid_t kal_gettid(void);
/* prctl(PR_SET_PDEATHSIG, sig): the child dies with its parent, so no peer outlives the harness. */
int kal_set_parent_death_signal(int sig);
/* prctl(PR_SET_DUMPABLE, 1): after a uid change /proc/self becomes root-owned unless dumpable,
 * and uid_map could not be written. */
int kal_set_dumpable(void);

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

/* CLOCK_MONOTONIC and CLOCK_REALTIME in nanoseconds. */
int64_t kal_monotonic_ns(void);
int64_t kal_realtime_ns(void);

#endif

/* kal_netns_cleanup_barrier (see kal_namespaces.h). */
#define _GNU_SOURCE
#include "kal_namespaces.h"
#include "kal_clocks.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/net_namespace.h>

#include "shim_private.h"

struct kal_netns_thread_job { int want_socket; int fd; int err; };

/* On a thread of its own (the caller's network namespace stays as it was): a new network
 * namespace, then either a NETLINK_ROUTE socket in it (the socket keeps it alive) or an fd of it. */
static void *kal_netns_thread(void *arg) {
    struct kal_netns_thread_job *job = arg;
    if (unshare(CLONE_NEWNET) != 0) { job->err = errno; return NULL; }
    job->fd = job->want_socket
        ? socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE)
        : open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (job->fd < 0) job->err = errno;
    return NULL;
}

static int kal_netns_on_thread(int want_socket) {
    struct kal_netns_thread_job job = { want_socket, -1, 0 };
    pthread_t thread;
    int rc = pthread_create(&thread, NULL, kal_netns_thread, &job);
    if (rc != 0) { errno = rc; return -1; }
    pthread_join(thread, NULL);
    if (job.fd < 0) { errno = job.err; return -1; }
    return job.fd;
}

/* Milliseconds until `deadline_ns` (CLOCK_MONOTONIC), rounded up so a wait never ends early. */
static int kal_ms_left(int64_t deadline_ns) {
    int64_t left = deadline_ns - kal_monotonic_ns();
    return left <= 0 ? 0 : (int)((left + 999999) / 1000000);
}

/* One RTM_*NSID request: the namespace by fd, and an id where nsid != INT32_MIN. */
static int kal_nsid_send(int sock, int type, uint32_t seq, int nsfd, int32_t nsid) {
    struct {
        struct nlmsghdr h;
        struct rtgenmsg g;
        char pad[NLMSG_ALIGN(sizeof(struct rtgenmsg)) - sizeof(struct rtgenmsg)];
        char attrs[2 * NLA_ALIGN(NLA_HDRLEN + 4)];
    } req;
    memset(&req, 0, sizeof req);
    size_t len = NLMSG_LENGTH(NLMSG_ALIGN(sizeof(struct rtgenmsg)));
    struct nlattr *a = (struct nlattr *)((char *)&req + len);
    a->nla_type = NETNSA_FD; a->nla_len = NLA_HDRLEN + 4;
    memcpy((char *)a + NLA_HDRLEN, &(uint32_t){(uint32_t)nsfd}, 4);
    len += NLA_ALIGN(a->nla_len);
    if (nsid != INT32_MIN) {
        a = (struct nlattr *)((char *)&req + len);
        a->nla_type = NETNSA_NSID; a->nla_len = NLA_HDRLEN + 4;
        memcpy((char *)a + NLA_HDRLEN, &nsid, 4);
        len += NLA_ALIGN(a->nla_len);
    }
    req.h.nlmsg_len = (uint32_t)len;
    req.h.nlmsg_type = (uint16_t)type;
    req.h.nlmsg_flags = NLM_F_REQUEST | (type == RTM_NEWNSID ? NLM_F_ACK : 0);
    req.h.nlmsg_seq = seq;
    req.g.rtgen_family = AF_UNSPEC;
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    return sendto(sock, &req, len, 0, (struct sockaddr *)&kernel, sizeof kernel) == (ssize_t)len ? 0 : -errno;
}

static int32_t kal_nsid_attr(const struct nlmsghdr *h) {
    const char *p = (const char *)NLMSG_DATA(h) + NLMSG_ALIGN(sizeof(struct rtgenmsg));
    const char *end = (const char *)h + h->nlmsg_len;
    while (p + NLA_HDRLEN <= end) {
        const struct nlattr *a = (const struct nlattr *)p;
        if (a->nla_len < NLA_HDRLEN || p + a->nla_len > end) break;
        if ((a->nla_type & NLA_TYPE_MASK) == NETNSA_NSID && a->nla_len >= NLA_HDRLEN + 4) {
            int32_t v; memcpy(&v, p + NLA_HDRLEN, 4); return v;
        }
        p += NLA_ALIGN(a->nla_len);
    }
    return INT32_MIN;
}

/* Reads until `want` says done (returns 1) or fails (<0), or the deadline passes (-ETIMEDOUT). */
static int kal_nsid_recv(int sock, int64_t deadline,
                         int (*want)(const struct nlmsghdr *, void *), void *ctx) {
    char buf[8192] __attribute__((aligned(4)));
    for (;;) {
        struct pollfd pfd = { sock, POLLIN, 0 };
        int n = poll(&pfd, 1, kal_ms_left(deadline));
        if (n < 0) { if (errno == EINTR) continue; return -errno; }
        if (n == 0) return -ETIMEDOUT;
        ssize_t got = recv(sock, buf, sizeof buf, 0);
        if (got < 0) { if (errno == EINTR) continue; return -errno; }
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)got); h = NLMSG_NEXT(h, got)) {
            int r = want(h, ctx);
            if (r != 0) return r;
        }
    }
}

struct kal_nsid_wait { uint32_t seq; int32_t nsid; };

static int kal_want_ack(const struct nlmsghdr *h, void *ctx) {
    struct kal_nsid_wait *w = ctx;
    if (h->nlmsg_type != NLMSG_ERROR || h->nlmsg_seq != w->seq) return 0;
    int err = ((const struct nlmsgerr *)NLMSG_DATA(h))->error;
    return err == 0 ? 1 : err;
}

static int kal_want_id(const struct nlmsghdr *h, void *ctx) {
    struct kal_nsid_wait *w = ctx;
    if (h->nlmsg_seq != w->seq) return 0;
    if (h->nlmsg_type == NLMSG_ERROR) { int err = ((const struct nlmsgerr *)NLMSG_DATA(h))->error; return err ? err : -EPROTO; }
    if (h->nlmsg_type != RTM_NEWNSID) return 0;
    w->nsid = kal_nsid_attr(h);
    return w->nsid >= 0 ? 1 : -EPROTO;
}

static int kal_want_delete(const struct nlmsghdr *h, void *ctx) {
    struct kal_nsid_wait *w = ctx;
    return h->nlmsg_type == RTM_DELNSID && kal_nsid_attr(h) == w->nsid;
}

int kal_netns_cleanup_barrier(int timeout_ms, int *step) {
    int64_t deadline = kal_monotonic_ns() + (int64_t)timeout_ms * 1000000;

    *step = 1;
    int sock = kal_netns_on_thread(1);
    if (sock < 0) return -errno;
    int rc = 0;
    struct sockaddr_nl local = { .nl_family = AF_NETLINK };
    int group = RTNLGRP_NSID;
    if (bind(sock, (struct sockaddr *)&local, sizeof local) != 0
        || setsockopt(sock, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group) != 0) {
        rc = -errno;
        goto out;
    }
    for (uint32_t round = 0; round < 2 && rc == 0; round++) {
        *step = 2;
        int sentinel = kal_netns_on_thread(0);
        if (sentinel < 0) { rc = -errno; break; }
        struct kal_nsid_wait w = { 2 * round + 1, -1 };
        *step = 3;
        rc = kal_nsid_send(sock, RTM_NEWNSID, w.seq, sentinel, NETNSA_NSID_NOT_ASSIGNED);
        if (rc == 0) rc = kal_nsid_recv(sock, deadline, kal_want_ack, &w);
        if (rc == 1) {
            *step = 4;
            w.seq++;
            rc = kal_nsid_send(sock, RTM_GETNSID, w.seq, sentinel, INT32_MIN);
            if (rc == 0) rc = kal_nsid_recv(sock, deadline, kal_want_id, &w);
        }
        close(sentinel);  /* its last reference: the kernel queues its cleanup */
        if (rc != 1) { if (rc == 0) rc = -EPROTO; break; }
        *step = 5;
        rc = kal_nsid_recv(sock, deadline, kal_want_delete, &w);
        rc = rc == 1 ? 0 : rc;
    }
out:
    close(sock);
    return rc;
}

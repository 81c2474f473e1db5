#define _GNU_SOURCE
#include "kal_sock_diag.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>
#include <linux/rtnetlink.h>

/* SockDiag.swift reads an address as the 4 bytes of one IPv4 address in network order, a port as a UInt16. */
_Static_assert(sizeof(((struct inet_diag_sockid *)0)->idiag_src[0]) == sizeof(((struct kal_diag_entry *)0)->saddr),
               "an IPv4 address in one idiag_src word");
_Static_assert(sizeof(((struct inet_diag_sockid *)0)->idiag_sport) == sizeof(((struct kal_diag_entry *)0)->sport),
               "a port in 16 bits");

static int get_int_opt(int fd, int level, int name) {
    int v = 0;
    socklen_t len = sizeof(v);
    return getsockopt(fd, level, name, &v, &len) == 0 ? v : -1;
}

int kal_read_sockopts(int fd, struct kal_sockopts *out) {
    out->so_keepalive = get_int_opt(fd, SOL_SOCKET, SO_KEEPALIVE);
    out->keepidle = get_int_opt(fd, IPPROTO_TCP, TCP_KEEPIDLE);
    out->keepintvl = get_int_opt(fd, IPPROTO_TCP, TCP_KEEPINTVL);
    out->keepcnt = get_int_opt(fd, IPPROTO_TCP, TCP_KEEPCNT);
    out->user_timeout_ms = get_int_opt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT);
    return 0;
}

int kal_tcp_diag_dump(struct kal_diag_entry *out, int max) {
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) return -errno;
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } request;
    memset(&request, 0, sizeof(request));
    request.nlh.nlmsg_len = sizeof(request);
    request.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    request.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    request.nlh.nlmsg_seq = 1;
    request.req.sdiag_family = AF_INET;
    request.req.sdiag_protocol = IPPROTO_TCP;
    request.req.idiag_ext = 1 << (INET_DIAG_INFO - 1);
    request.req.idiag_states = ~0U;
    struct sockaddr_nl kernel = { .nl_family = AF_NETLINK };
    if (sendto(fd, &request, sizeof(request), 0, (struct sockaddr *)&kernel, sizeof(kernel)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    static __thread char buf[65536];
    int count = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            int e = errno;
            close(fd);
            return -e;
        }
        if (n == 0) break;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) { close(fd); return count; }
            if (h->nlmsg_type == NLMSG_ERROR) {
                struct nlmsgerr *err = NLMSG_DATA(h);
                close(fd);
                return err->error ? err->error : -EIO;
            }
            if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY) continue;
            struct inet_diag_msg *msg = NLMSG_DATA(h);
            if (count < max) {
                struct kal_diag_entry *e = &out[count];
                memset(e, 0, sizeof(*e));
                e->state = msg->idiag_state;
                e->sport = ntohs(msg->id.idiag_sport);
                e->dport = ntohs(msg->id.idiag_dport);
                e->saddr = msg->id.idiag_src[0];
                e->daddr = msg->id.idiag_dst[0];
                e->inode = msg->idiag_inode;
                e->uid = msg->idiag_uid;
                int len = h->nlmsg_len - NLMSG_LENGTH(sizeof(*msg));
                for (struct rtattr *a = (struct rtattr *)(msg + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
                    if (a->rta_type == INET_DIAG_INFO) {
                        struct tcp_info ti;
                        memset(&ti, 0, sizeof(ti));
                        size_t l = RTA_PAYLOAD(a) < sizeof(ti) ? RTA_PAYLOAD(a) : sizeof(ti);
                        memcpy(&ti, RTA_DATA(a), l);
                        kal_tcp_info_from(&e->info, &ti);
                        e->has_info = 1;
                    }
                }
            }
            count++;
        }
    }
    close(fd);
    return count;
}

#ifndef KAL_SOCK_DIAG_H
#define KAL_SOCK_DIAG_H

#include <stdint.h>

#include <kal_tcp_info.h>  /* CKeepaliveTCPInfo, shared with the lean peer */

/* ---- Application peers: another process's socket, the namespace's socket table (sock_diag.c;
 * pidfd_getfd: kal_process.h) ---- */

/* What a program applied to its socket, read back: -1 in a field when getsockopt failed. */
struct kal_sockopts {
    int so_keepalive;
    int keepidle;
    int keepintvl;
    int keepcnt;
    int user_timeout_ms;
};
/* Fills *out; returns 0. */
int kal_read_sockopts(int fd, struct kal_sockopts *out);

/* One IPv4 TCP socket of the calling thread's network namespace, from a sock_diag (inet_diag) dump. */
struct kal_diag_entry {
    uint8_t state;
    uint8_t has_info;
    uint16_t sport;        /* host byte order */
    uint16_t dport;
    uint32_t saddr;        /* network byte order */
    uint32_t daddr;
    uint32_t inode;
    uint32_t uid;
    struct kal_tcp_info info;   /* INET_DIAG_INFO, when has_info */
};
/* NETLINK_SOCK_DIAG dump of every IPv4 TCP socket (all states) with INET_DIAG_INFO. Writes up to
 * `max` entries and returns how many there were in all (may exceed max), or -errno. */
int kal_tcp_diag_dump(struct kal_diag_entry *out, int max);

#endif

/*
 * sock_diag.c - the netlink inet_diag dump behind sock_diag.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sock_diag.h"

#include <errno.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/tcp.h>
#include <stddef.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef CW_IN_PRELOAD
/* Inside libclosewatch.so, bypass our own syscall() hook (preload/real.c). */
long cw_raw_syscall(long nr, ...);
#define syscall cw_raw_syscall
#endif

/* The peer's FIN as the kernel dates it: tcpi_last_ack_recv, ms ago. */
static uint32_t last_ack_ms_of(const struct nlmsghdr *h)
{
    const struct inet_diag_msg *m = NLMSG_DATA(h);
    int len = (int)(h->nlmsg_len - NLMSG_LENGTH(sizeof *m));
    for (const struct rtattr *a = (const struct rtattr *)(m + 1); RTA_OK(a, len);
         a = RTA_NEXT(a, len)) {
        /* Older kernels send a shorter tcp_info: the field must be inside. */
        if (a->rta_type == INET_DIAG_INFO &&
            RTA_PAYLOAD(a) >= offsetof(struct tcp_info, tcpi_last_ack_recv) + sizeof(uint32_t)) {
            const struct tcp_info *ti = RTA_DATA(a);
            return ti->tcpi_last_ack_recv;
        }
    }
    return CW_DIAG_NO_AGE;
}

static int dump_family(int nl, int family, uint32_t states, cw_sock_diag_cb cb,
                       cw_sock_diag_aged_cb aged, void *ctx)
{
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } msg;
    memset(&msg, 0, sizeof msg);
    msg.nlh.nlmsg_len = sizeof msg;
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    msg.nlh.nlmsg_seq = (uint32_t)family;
    msg.req.sdiag_family = (uint8_t)family;
    msg.req.sdiag_protocol = IPPROTO_TCP;
    msg.req.idiag_states = states;
    if (aged)
        msg.req.idiag_ext = 1u << (INET_DIAG_INFO - 1);

    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (syscall(SYS_sendto, nl, &msg, sizeof msg, 0, &kernel, sizeof kernel) < 0)
        return -errno;

    long buf[8192 / sizeof(long)];
    for (;;) {
        long n = syscall(SYS_recvfrom, nl, buf, sizeof buf, 0, NULL, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EPROTO;
        int stop = 0;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (unsigned long)n);
             h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE)
                return 0;
            if (h->nlmsg_type == NLMSG_ERROR) {
                const struct nlmsgerr *e = NLMSG_DATA(h);
                return h->nlmsg_len >= NLMSG_LENGTH(sizeof *e) && e->error ? e->error : -EPROTO;
            }
            if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY || stop ||
                h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
                continue;
            stop = aged ? aged(ctx, NLMSG_DATA(h), last_ack_ms_of(h)) : cb(ctx, NLMSG_DATA(h));
        }
        /* Once stopped we still drain the dump so the socket ends cleanly. */
    }
}

int cw_sock_diag_open(void)
{
    int nl = (int)syscall(SYS_socket, AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    return nl < 0 ? -errno : nl;
}

int cw_sock_diag_find(int nl, const struct cw_sock_id *id, uint8_t *state, uint64_t *inode,
                      uint32_t *last_ack_ms)
{
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } msg;
    memset(&msg, 0, sizeof msg);
    msg.nlh.nlmsg_len = sizeof msg;
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST;
    msg.req.sdiag_family = (uint8_t)id->family;
    msg.req.sdiag_protocol = IPPROTO_TCP;
    msg.req.idiag_states = ~0u;
    msg.req.idiag_ext = 1u << (INET_DIAG_INFO - 1);
    /* "src" is the socket's own end. */
    msg.req.id.idiag_sport = htons(id->local_port);
    msg.req.id.idiag_dport = htons(id->peer_port);
    memcpy(msg.req.id.idiag_src, id->local, id->family == AF_INET ? 4 : 16);
    memcpy(msg.req.id.idiag_dst, id->peer, id->family == AF_INET ? 4 : 16);
    msg.req.id.idiag_if = id->scope_id;
    msg.req.id.idiag_cookie[0] = msg.req.id.idiag_cookie[1] = INET_DIAG_NOCOOKIE;

    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    if (syscall(SYS_sendto, nl, &msg, sizeof msg, 0, &kernel, sizeof kernel) < 0)
        return -errno;
    long buf[2048 / sizeof(long)];
    for (;;) {
        long n = syscall(SYS_recvfrom, nl, buf, sizeof buf, 0, NULL, NULL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EPROTO;
        const struct nlmsghdr *h = (const struct nlmsghdr *)buf;
        if (!NLMSG_OK(h, (unsigned long)n))
            return -EPROTO;
        if (h->nlmsg_type == NLMSG_ERROR) {
            const struct nlmsgerr *e = NLMSG_DATA(h);
            return h->nlmsg_len >= NLMSG_LENGTH(sizeof *e) && e->error ? e->error : -EPROTO;
        }
        if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
            h->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
            return -EPROTO;
        const struct inet_diag_msg *m = NLMSG_DATA(h);
        *state = m->idiag_state;
        *inode = m->idiag_inode;
        *last_ack_ms = last_ack_ms_of(h);
        return 0;
    }
}

static int dump_both(uint32_t states, cw_sock_diag_cb cb, cw_sock_diag_aged_cb aged, void *ctx)
{
    int nl = (int)syscall(SYS_socket, AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0)
        return -errno;
    int r = dump_family(nl, AF_INET, states, cb, aged, ctx);
    if (r == 0)
        r = dump_family(nl, AF_INET6, states, cb, aged, ctx);
    syscall(SYS_close, nl);
    return r;
}

int cw_sock_diag_dump(uint32_t states, cw_sock_diag_cb cb, void *ctx)
{
    return dump_both(states, cb, NULL, ctx);
}

int cw_sock_diag_dump_aged(uint32_t states, cw_sock_diag_aged_cb cb, void *ctx)
{
    return dump_both(states, NULL, cb, ctx);
}

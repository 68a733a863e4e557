/*
 * sock_diag.c - the netlink inet_diag dump behind sock_diag.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "sock_diag.h"

#include <errno.h>
#include <linux/netlink.h>
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

static int dump_family(int nl, int family, uint32_t states, cw_sock_diag_cb cb, void *ctx)
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
            stop = cb(ctx, NLMSG_DATA(h));
        }
        /* Once stopped we still drain the dump so the socket ends cleanly. */
    }
}

int cw_sock_diag_dump(uint32_t states, cw_sock_diag_cb cb, void *ctx)
{
    int nl = (int)syscall(SYS_socket, AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (nl < 0)
        return -errno;
    int r = dump_family(nl, AF_INET, states, cb, ctx);
    if (r == 0)
        r = dump_family(nl, AF_INET6, states, cb, ctx);
    syscall(SYS_close, nl);
    return r;
}

/*
 * sock_addr.h - a socket address as a ring keeps it (struct cw_addr), from
 * the kernel's struct sockaddr: one conversion for the preload (its hooks'
 * arguments and results) and the bpf recorder (sockets it adopts).
 */
#ifndef CW_SOCK_ADDR_H
#define CW_SOCK_ADDR_H

#include "shm_layout.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

/* IPv4/IPv6 as bytes and a host-order port; AF_UNIX as a path prefix
 * ('@' for an abstract name); anything else as its family only. */
static inline void cw_addr_from_sockaddr(struct cw_addr *out, const struct sockaddr *sa,
                                         socklen_t len)
{
    memset(out, 0, sizeof *out);
    if (!sa || len < sizeof(sa_family_t))
        return;
    out->family = sa->sa_family;
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const void *)sa;
        out->port = ntohs(in->sin_port);
        memcpy(out->bytes, &in->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        out->port = ntohs(in6->sin6_port);
        out->scope_id = in6->sin6_scope_id;
        memcpy(out->bytes, &in6->sin6_addr, 16);
    } else if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *un = (const void *)sa;
        size_t n = len - offsetof(struct sockaddr_un, sun_path);
        if (n > sizeof out->bytes - 1)
            n = sizeof out->bytes - 1;
        memcpy(out->bytes, un->sun_path, n);
        if (n > 0 && out->bytes[0] == 0)
            out->bytes[0] = '@';
    }
}

#endif

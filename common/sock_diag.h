/*
 * sock_diag.h - asks the kernel (NETLINK_SOCK_DIAG) for TCP sockets in a
 * set of states, IPv4 and IPv6, one dump per family. Used by the preload's
 * sampler and by the analyzer's live view. Raw system calls and a stack
 * buffer only: safe in the sampler process and after fork.
 */
#ifndef CW_SOCK_DIAG_H
#define CW_SOCK_DIAG_H

#include <stdint.h>
#include <linux/inet_diag.h>

#define CW_TCP_STATE_BIT(s) (1u << (s))
/* Every state a socket with an fd can be in: not TIME_WAIT or SYN_RECV,
 * kernel-only minisockets that no process holds and that, after a busy
 * run, outnumber all the others (asking for them makes a dump slow). */
#define CW_TCP_OWNED_STATES (0xfffu & ~(CW_TCP_STATE_BIT(3) | CW_TCP_STATE_BIT(6)))

/* Called once per socket; return non-zero to stop the dump. */
typedef int (*cw_sock_diag_cb)(void *ctx, const struct inet_diag_msg *msg);

/* Returns 0, or -errno when the kernel could not be asked. */
int cw_sock_diag_dump(uint32_t states, cw_sock_diag_cb cb, void *ctx);

/* The same dump with each socket's tcpi_last_ack_recv (ms since the last
 * segment that acknowledged anything: for a socket in CLOSE_WAIT, usually
 * the peer's FIN). It dates the FIN to a few ms without an fd, but only as
 * an upper bound: a later ACK moves it. CW_DIAG_NO_AGE when not reported. */
#define CW_DIAG_NO_AGE UINT32_MAX
typedef int (*cw_sock_diag_aged_cb)(void *ctx, const struct inet_diag_msg *msg,
                                    uint32_t last_ack_ms);
int cw_sock_diag_dump_aged(uint32_t states, cw_sock_diag_aged_cb cb, void *ctx);

/* The FIN's CLOCK_MONOTONIC time from an age the kernel gave at or before
 * `now`; 0 if none. The age counts whole jiffies (up to 10 ms each), so the
 * true FIN may be a jiffy later than now - age: add one, erring young (a
 * finding must never come before its grace is over). */
#define CW_JIFFY_MAX_NS 10000000ull
static inline uint64_t cw_fin_from_age(uint64_t now, uint32_t last_ack_ms)
{
    uint64_t ago = (uint64_t)last_ack_ms * 1000000ull;
    if (last_ack_ms == CW_DIAG_NO_AGE || ago >= now)
        return 0;
    uint64_t fin = now - ago + CW_JIFFY_MAX_NS;
    return fin < now ? fin : now;
}

/* One TCP socket by its two ends (a hash lookup in the kernel, not a walk):
 * its state and inode. Ports in host order, addresses in network order
 * (4 bytes for AF_INET, 16 for AF_INET6). */
struct cw_sock_id {
    int family;
    uint8_t local[16], peer[16];
    uint16_t local_port, peer_port;
    uint32_t scope_id;
};

/* A NETLINK_SOCK_DIAG socket for cw_sock_diag_find; -errno on failure. */
int cw_sock_diag_open(void);

/* 0 with *state, *inode and *last_ack_ms (as cw_sock_diag_dump_aged) filled, -ENOENT if there is no
 * such socket, or another -errno. */
int cw_sock_diag_find(int nl, const struct cw_sock_id *id, uint8_t *state, uint64_t *inode,
                      uint32_t *last_ack_ms);

#endif

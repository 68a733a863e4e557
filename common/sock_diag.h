/*
 * sock_diag.h - asks the kernel (NETLINK_SOCK_DIAG) for TCP sockets in a
 * set of states, IPv4 and IPv6, one dump per family. Used by the preload's
 * sampler and by the analyzer's live view. Raw system calls and a stack
 * buffer only: safe in a sampler thread and after fork.
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

#endif

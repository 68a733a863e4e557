/*
 * hooks_life.c - the interposed calls that begin or end a socket's life:
 * socket, socketpair, accept, accept4, connect, listen, shutdown, close and
 * its relatives (dup2/dup3 over a socket, close_range, closefrom, fclose),
 * dup/fcntl(F_DUPFD), and syscall() for programs (libuv) that go around
 * libc's wrappers.
 *
 * Each hook calls the real function first and returns its result untouched;
 * errno is restored by the recorder.
 */
#include "cw.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#undef syscall /* this file defines the hook; raw calls use cw_raw_syscall */

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static void after_socket(int r, int domain, int type, int protocol)
{
    if (r >= 0)
        cw_on_open(r, CW_ORIGIN_SOCKET, domain, type, protocol, -1);
    else
        cw_on_open_failed(CW_CALL_SOCKET, errno);
}

CW_EXPORT int socket(int domain, int type, int protocol)
{
    int r = REAL(socket)(domain, type, protocol);
    after_socket(r, domain, type, protocol);
    return r;
}

static void after_socketpair(int r, int domain, int type, int protocol, const int sv[2])
{
    if (r == 0) {
        cw_on_open(sv[0], CW_ORIGIN_SOCKETPAIR, domain, type, protocol, -1);
        cw_on_open(sv[1], CW_ORIGIN_SOCKETPAIR, domain, type, protocol, -1);
    } else {
        cw_on_open_failed(CW_CALL_SOCKETPAIR, errno);
    }
}

CW_EXPORT int socketpair(int domain, int type, int protocol, int sv[2])
{
    int r = REAL(socketpair)(domain, type, protocol, sv);
    after_socketpair(r, domain, type, protocol, sv);
    return r;
}

/*
 * The peer's address comes with accept for free: from the caller's buffer
 * when the kernel did not truncate it (after accept, *len is the address's
 * full length, which may exceed what the caller passed), from a buffer of
 * ours when the caller passed none and the listener is a TCP/IP one we know
 * (for those the kernel's extra getname cannot fail), else from getpeername.
 * *len is read before the call only where it is readable: a bad pointer
 * must get the program EFAULT from the kernel, not SIGSEGV from us.
 */
struct accept_args {
    struct sockaddr *addr;
    socklen_t *len;
    socklen_t given; /* the buffer's size before the call, 0 if unknown */
    struct sockaddr_storage own;
    socklen_t own_len;
};

static void accept_prepare(int lfd, struct sockaddr *addr, socklen_t *len, struct accept_args *x)
{
    x->addr = addr;
    x->len = len;
    x->given = 0;
    if (addr && len) {
        int saved = errno; /* the check may fail a system call */
        if (cw_readable(len, sizeof *len))
            x->given = *len;
        errno = saved;
    } else if (!addr) {
        struct cw_fd_entry *l = cw_fd(lfd);
        if (l && (l->sid & CW_SID_OPEN) && (l->family == AF_INET || l->family == AF_INET6)) {
            x->own_len = sizeof x->own;
            x->addr = (struct sockaddr *)&x->own;
            x->len = &x->own_len;
            x->given = sizeof x->own;
        }
    }
}

static void after_accept(int lfd, int r, const struct accept_args *x)
{
    if (r >= 0)
        cw_on_accept(lfd, r, x && x->given && *x->len <= x->given ? x->addr : NULL,
                     x && x->given ? *x->len : 0);
    else
        cw_on_open_failed(CW_CALL_ACCEPT, errno);
}

CW_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    struct accept_args x;
    accept_prepare(fd, addr, len, &x);
    int r = REAL(accept)(fd, x.addr, x.len);
    after_accept(fd, r, &x);
    return r;
}

CW_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    struct accept_args x;
    accept_prepare(fd, addr, len, &x);
    int r = REAL(accept4)(fd, x.addr, x.len, flags);
    after_accept(fd, r, &x);
    return r;
}

CW_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    int r = REAL(connect)(fd, addr, len);
    cw_on_connect(fd, addr, len, r, r == 0 ? 0 : errno);
    return r;
}

CW_EXPORT int listen(int fd, int backlog)
{
    int r = REAL(listen)(fd, backlog);
    if (r == 0)
        cw_on_listen(fd);
    return r;
}

CW_EXPORT int shutdown(int fd, int how)
{
    int r = REAL(shutdown)(fd, how);
    cw_on_shutdown(fd, how, r);
    return r;
}

static void after_close(int fd, uint64_t sid, int how, int r)
{
    if (cw_close_matters(fd, sid, r))
        cw_on_close(fd, sid, how, r, r < 0 ? errno : 0, -1);
}

CW_EXPORT int close(int fd)
{
    uint64_t sid = cw_sid_before(fd);
    int r = REAL(close)(fd);
    after_close(fd, sid, CW_CLOSE_CLOSE, r);
    return r;
}

CW_EXPORT int fclose(FILE *fp)
{
    int fd = fp ? fileno(fp) : -1;
    uint64_t sid = cw_sid_before(fd);
    int r = REAL(fclose)(fp);
    if (sid & CW_SID_OPEN) /* fclose closes the fd even when flushing fails */
        cw_on_close(fd, sid, CW_CLOSE_FCLOSE, 0, errno, -1);
    return r;
}

static void after_dup(int oldfd, int r, uint64_t newfd_sid)
{
    if (r >= 0 && r != oldfd)
        cw_on_dup(oldfd, r, newfd_sid);
    else if (r < 0 && (errno == EMFILE || errno == ENFILE) && (cw_sid_before(oldfd) & CW_SID_OPEN))
        cw_on_open_failed(CW_CALL_DUP, errno);
}

CW_EXPORT int dup(int fd)
{
    int r = REAL(dup)(fd);
    after_dup(fd, r, 0);
    return r;
}

CW_EXPORT int dup2(int oldfd, int newfd)
{
    uint64_t sid = cw_sid_before(newfd);
    int r = REAL(dup2)(oldfd, newfd);
    after_dup(oldfd, r, sid);
    return r;
}

CW_EXPORT int dup3(int oldfd, int newfd, int flags)
{
    uint64_t sid = cw_sid_before(newfd);
    int r = REAL(dup3)(oldfd, newfd, flags);
    after_dup(oldfd, r, sid);
    return r;
}

static int fcntl_common(int (*real)(int, int, ...), int fd, int cmd, va_list ap)
{
    /* Every fcntl argument is an int, a long or a pointer: one word carries it. */
    long arg = va_arg(ap, long);
    int r = real(fd, cmd, arg);
    if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
        after_dup(fd, r, 0);
    return r;
}

CW_EXPORT int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    int r = fcntl_common(REAL(fcntl), fd, cmd, ap);
    va_end(ap);
    return r;
}

CW_EXPORT int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    int r = fcntl_common(REAL(fcntl64), fd, cmd, ap);
    va_end(ap);
    return r;
}

static void after_close_range(unsigned first, unsigned last, int flags, int r)
{
    if (r == 0 && !(flags & CLOSE_RANGE_CLOEXEC))
        cw_on_close_range(first, last, CW_CLOSE_RANGE);
}

CW_EXPORT int close_range(unsigned first, unsigned last, int flags)
{
    int r = cw_real.close_range || (cw_resolve_real(), cw_real.close_range)
                ? cw_real.close_range(first, last, flags)
                : (int)cw_raw_syscall(SYS_close_range, first, last, flags);
    after_close_range(first, last, flags, r);
    return r;
}

CW_EXPORT void closefrom(int lowfd)
{
    if (cw_real.closefrom || (cw_resolve_real(), cw_real.closefrom))
        cw_real.closefrom(lowfd);
    else
        cw_raw_syscall(SYS_close_range, (unsigned)lowfd, ~0u, 0);
    if (lowfd >= 0)
        cw_on_close_range((unsigned)lowfd, ~0u, CW_CLOSE_RANGE);
}

CW_EXPORT long syscall(long nr, ...)
{
    va_list ap;
    va_start(ap, nr);
    long a[6];
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);

    /* A child that skips our fork handler may follow (see vfork.c). */
    if (nr == SYS_fork || nr == SYS_vfork || nr == SYS_clone || nr == SYS_clone3)
        __atomic_store_n(&cw_unforked_child_seen, 1, __ATOMIC_RELAXED);
    uint64_t sid = 0;
    if (nr == SYS_close || nr == SYS_dup2 || nr == SYS_dup3)
        sid = cw_sid_before((int)(nr == SYS_close ? a[0] : a[1]));
    long r = REAL(sys)(nr, a[0], a[1], a[2], a[3], a[4], a[5]);

    switch (nr) {
    case SYS_close: after_close((int)a[0], sid, CW_CLOSE_SYSCALL, (int)r); break;
    case SYS_close_range:
        after_close_range((unsigned)a[0], (unsigned)a[1], (int)a[2], (int)r);
        break;
    case SYS_socket: after_socket((int)r, (int)a[0], (int)a[1], (int)a[2]); break;
    case SYS_socketpair:
        after_socketpair((int)r, (int)a[0], (int)a[1], (int)a[2], (int *)a[3]);
        break;
    case SYS_accept:
    case SYS_accept4: after_accept((int)a[0], (int)r, NULL); break;
    case SYS_connect:
        cw_on_connect((int)a[0], (const struct sockaddr *)a[1], (socklen_t)a[2], (int)r,
                      r == 0 ? 0 : errno);
        break;
    case SYS_shutdown: cw_on_shutdown((int)a[0], (int)a[1], (int)r); break;
    case SYS_dup: after_dup((int)a[0], (int)r, 0); break;
    case SYS_dup2:
    case SYS_dup3: after_dup((int)a[0], (int)r, sid); break;
    default: cw_syscall_read_result(nr, a, r); break;
    }
    return r;
}

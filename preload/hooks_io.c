/*
 * hooks_io.c - the interposed calls that can report a peer's FIN: the read
 * family (read()==0 on a stream socket with a non-empty buffer) and the
 * readiness calls (RDHUP/HUP from epoll and poll), including their
 * _FORTIFY_SOURCE variants. Also epoll_ctl, to map epoll's user data back to
 * fds, and recvmsg's SCM_RIGHTS, which hands us sockets.
 *
 * These are the hot path: a read that returns data costs one comparison.
 */
#include "cw.h"

#include <sys/syscall.h>

static size_t iov_len(const struct iovec *iov, long n)
{
    size_t total = 0;
    for (long i = 0; i < n && iov; i++)
        total += iov[i].iov_len;
    return total;
}

CW_EXPORT ssize_t read(int fd, void *buf, size_t n)
{
    ssize_t r = REAL(read)(fd, buf, n);
    cw_check_read(fd, r, n);
    return r;
}

CW_EXPORT ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen)
{
    ssize_t r = REAL(read_chk)(fd, buf, n, buflen);
    cw_check_read(fd, r, n);
    return r;
}

CW_EXPORT ssize_t readv(int fd, const struct iovec *iov, int n)
{
    ssize_t r = REAL(readv)(fd, iov, n);
    if (CW_UNLIKELY(r == 0))
        cw_check_read(fd, r, iov_len(iov, n));
    return r;
}

CW_EXPORT ssize_t recv(int fd, void *buf, size_t n, int flags)
{
    ssize_t r = REAL(recv)(fd, buf, n, flags);
    cw_check_read(fd, r, n);
    return r;
}

CW_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags)
{
    ssize_t r = REAL(recv_chk)(fd, buf, n, buflen, flags);
    cw_check_read(fd, r, n);
    return r;
}

CW_EXPORT ssize_t recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr,
                           socklen_t *alen)
{
    ssize_t r = REAL(recvfrom)(fd, buf, n, flags, addr, alen);
    cw_check_read(fd, r, n);
    return r;
}

CW_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
                                 struct sockaddr *addr, socklen_t *alen)
{
    ssize_t r = REAL(recvfrom_chk)(fd, buf, n, buflen, flags, addr, alen);
    cw_check_read(fd, r, n);
    return r;
}

static void after_recvmsg(int fd, struct msghdr *msg, ssize_t r)
{
    if (CW_UNLIKELY(r == 0) && msg)
        cw_check_read(fd, r, iov_len(msg->msg_iov, (long)msg->msg_iovlen));
    if (CW_UNLIKELY(r >= 0 && msg && msg->msg_control && msg->msg_controllen))
        cw_on_scm_rights(msg);
}

CW_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    ssize_t r = REAL(recvmsg)(fd, msg, flags);
    after_recvmsg(fd, msg, r);
    return r;
}

CW_EXPORT int recvmmsg(int fd, struct mmsghdr *vec, unsigned n, int flags, struct timespec *timeout)
{
    int r = REAL(recvmmsg)(fd, vec, n, flags, timeout);
    for (int i = 0; i < r; i++)
        if (CW_UNLIKELY(vec[i].msg_len == 0 || vec[i].msg_hdr.msg_controllen))
            after_recvmsg(fd, &vec[i].msg_hdr, vec[i].msg_len);
    return r;
}

CW_EXPORT int epoll_ctl(int epfd, int op, int fd, struct epoll_event *ev)
{
    int r = REAL(epoll_ctl)(epfd, op, fd, ev);
    if (r == 0 && ev && (op == EPOLL_CTL_ADD || op == EPOLL_CTL_MOD))
        cw_epoll_register(fd, ev->data.u64);
    return r;
}

CW_EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max, int timeout)
{
    int r = REAL(epoll_wait)(epfd, ev, max, timeout);
    if (r > 0)
        cw_on_epoll_events(ev, r);
    return r;
}

CW_EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int max, int timeout,
                          const sigset_t *ss)
{
    int r = REAL(epoll_pwait)(epfd, ev, max, timeout, ss);
    if (r > 0)
        cw_on_epoll_events(ev, r);
    return r;
}

CW_EXPORT int epoll_pwait2(int epfd, struct epoll_event *ev, int max,
                           const struct timespec *timeout, const sigset_t *ss)
{
    int r = cw_real.epoll_pwait2 || (cw_resolve_real(), cw_real.epoll_pwait2)
                ? cw_real.epoll_pwait2(epfd, ev, max, timeout, ss)
                : (int)syscall(SYS_epoll_pwait2, epfd, ev, max, timeout, ss, _NSIG / 8);
    if (r > 0)
        cw_on_epoll_events(ev, r);
    return r;
}

CW_EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    int r = REAL(poll)(fds, n, timeout);
    if (r > 0)
        cw_on_poll_events(fds, n);
    return r;
}

CW_EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen)
{
    int r = REAL(poll_chk)(fds, n, timeout, fdslen);
    if (r > 0)
        cw_on_poll_events(fds, n);
    return r;
}

CW_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *timeout,
                    const sigset_t *ss)
{
    int r = REAL(ppoll)(fds, n, timeout, ss);
    if (r > 0)
        cw_on_poll_events(fds, n);
    return r;
}

CW_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *timeout,
                          const sigset_t *ss, size_t fdslen)
{
    int r = REAL(ppoll_chk)(fds, n, timeout, ss, fdslen);
    if (r > 0)
        cw_on_poll_events(fds, n);
    return r;
}

void cw_syscall_read_result(long nr, const long *a, long r)
{
    switch (nr) {
    case SYS_read:
    case SYS_recvfrom: cw_check_read((int)a[0], r, (size_t)a[2]); break;
    case SYS_readv:
        if (r == 0)
            cw_check_read((int)a[0], r, iov_len((const struct iovec *)a[1], a[2]));
        break;
    case SYS_recvmsg: after_recvmsg((int)a[0], (struct msghdr *)a[1], r); break;
    case SYS_epoll_wait:
    case SYS_epoll_pwait:
    case SYS_epoll_pwait2:
        if (r > 0)
            cw_on_epoll_events((const struct epoll_event *)a[1], (int)r);
        break;
    case SYS_epoll_ctl:
        if (r == 0 && a[3] && (a[1] == EPOLL_CTL_ADD || a[1] == EPOLL_CTL_MOD))
            cw_epoll_register((int)a[2], ((const struct epoll_event *)a[3])->data.u64);
        break;
    }
}

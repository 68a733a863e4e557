/*
 * record.c - turns what the hooks saw into fd-table updates and ring events.
 *
 * The fd table is the truth about what is open now; the ring is history.
 * Every entry point here is called after the real function returned, runs
 * under cw_enter (so nested and signal-interrupted calls pass through),
 * and saves and restores errno around its own system calls.
 */
#include "cw.h"
#include "../common/hash.h"
#include "../common/sock_addr.h"

#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <pthread.h>
#include <unistd.h>

static __thread pid_t tls_tid_pid __attribute__((tls_model("initial-exec")));
static __thread pid_t tls_tid __attribute__((tls_model("initial-exec")));

/*
 * glibc already knows every thread's tid (the kernel wrote it there at
 * clone and fork): read it from the thread's descriptor, at the offset glibc
 * publishes for debuggers, instead of a gettid per thread. Checked once
 * against gettid; any doubt, and it is gettid.
 */
static _Atomic int tid_from_glibc = -1; /* -1 not yet checked, 0 no, 1 yes */

static pid_t glibc_tid(void)
{
    const uint32_t *d = cw_real.thread_db_tid;
    if (!d || d[0] != 32 || d[1] != 1 || d[2] > 4096)
        return 0;
    return *(const pid_t *)((const char *)pthread_self() + d[2]);
}

static __attribute__((noinline)) void tid_refresh(void)
{
    int use = atomic_load_explicit(&tid_from_glibc, memory_order_relaxed);
    pid_t tid = use ? glibc_tid() : 0;
    if (use < 0 || tid <= 0) {
        pid_t sys = (pid_t)syscall(SYS_gettid);
        if (use < 0)
            atomic_store_explicit(&tid_from_glibc, tid == sys, memory_order_relaxed);
        tid = sys;
    }
    tls_tid = tid;
    tls_tid_pid = cw.pid;
}

static inline uint32_t cw_tid(void)
{
    if (CW_UNLIKELY(tls_tid_pid != cw.pid))
        tid_refresh();
    return (uint32_t)tls_tid;
}

void cw_event(uint16_t type, int fd, uint64_t sid, uint32_t stack, int64_t a0, int64_t a1,
              int64_t a2)
{
    cw_event_at(cw_now(), type, fd, sid, stack, a0, a1, a2);
}

void cw_event_at(uint64_t now, uint16_t type, int fd, uint64_t sid, uint32_t stack, int64_t a0,
                 int64_t a1, int64_t a2)
{
    cw_event_flagged(now, 0, type, fd, sid, stack, a0, a1, a2);
}

void cw_event_flagged(uint64_t now, uint16_t flags, uint16_t type, int fd, uint64_t sid,
                      uint32_t stack, int64_t a0, int64_t a1, int64_t a2)
{
    struct cw_header *h = cw.hdr;
    uint64_t idx =
        atomic_fetch_add_explicit((_Atomic uint64_t *)&h->write_idx, 1, memory_order_relaxed);
    struct cw_event *ev = &cw.ring[idx & cw.ring_mask];
    _Atomic uint64_t *seq = (_Atomic uint64_t *)&ev->seq;

    /* 0 marks the slot as being written; the reader treats it as torn. */
    atomic_store_explicit(seq, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    ev->time_ns = now;
    ev->sid = sid;
    ev->fd = fd;
    ev->type = type;
    ev->flags = flags;
    ev->tid = cw_tid();
    ev->stack = stack;
    ev->arg0 = a0;
    ev->arg1 = a1;
    ev->arg2 = a2;
    atomic_store_explicit(seq, idx + 1, memory_order_release);
    /* The ring is written once per lap: every slot is a cache miss. Ask for
     * the next one now, so the next event finds it in cache. */
    __builtin_prefetch(&cw.ring[(idx + 1) & cw.ring_mask], 1, 3);
}

static uint64_t fd_inode(int fd)
{
    struct stat st;
    if (syscall(SYS_fstat, fd, &st) != 0)
        return 0;
    return (uint64_t)st.st_ino;
}

/* nr: SYS_getsockname or SYS_getpeername; 0 if the kernel had no answer. */
static int fill_addr(int fd, struct cw_addr *out, long nr)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (syscall(nr, fd, &ss, &len) != 0)
        return 0;
    cw_addr_from_sockaddr(out, (struct sockaddr *)&ss, len);
    return 1;
}

static void note_hwm(int fd)
{
    _Atomic uint32_t *hwm = (_Atomic uint32_t *)&cw.hdr->fd_hwm;
    uint32_t cur = atomic_load_explicit(hwm, memory_order_relaxed);
    while ((uint32_t)fd + 1 > cur &&
           !atomic_compare_exchange_weak_explicit(hwm, &cur, (uint32_t)fd + 1, memory_order_release,
                                                  memory_order_relaxed))
        ;
}

static _Atomic uint32_t *sockets_open(void)
{
    return (_Atomic uint32_t *)&cw.hdr->sockets_open;
}

/* The entry's sid word: the only field written with atomics, see CW_SID_OPEN. */
static _Atomic uint64_t *sid_word(struct cw_fd_entry *e)
{
    return (_Atomic uint64_t *)&e->sid;
}

/* Marks the socket in e closed if it is still the one with id sid. */
static int retire(struct cw_fd_entry *e, uint64_t open_sid)
{
    uint64_t expect = open_sid;
    if (!atomic_compare_exchange_strong(sid_word(e), &expect, open_sid & ~CW_SID_OPEN))
        return 0;
    atomic_fetch_sub_explicit(sockets_open(), 1, memory_order_relaxed);
    return 1;
}

void cw_on_vanished(int fd, uint64_t open_sid)
{
    struct cw_fd_entry *e = cw_fd(fd);
    if (!e || !retire(e, open_sid))
        return;
    uint64_t now = cw_now();
    e->close_ns = now;
    cw_event_at(now, CW_EV_CLOSE, fd, open_sid & ~CW_SID_OPEN, 0, CW_CLOSE_VANISHED, e->eof_count,
                -1);
}

/* inode 0: ask fstat (fd is valid in this thread's fd table). */
static void record_open(int fd, int origin, int family, int type, int protocol, int src_fd,
                        uint32_t stack, uint64_t inode, const struct cw_fd_entry *seen)
{
    struct cw_fd_entry *e = cw_fd(fd);
    if (!e) {
        atomic_fetch_add((_Atomic uint64_t *)&cw.hdr->fds_beyond_table, 1);
        return;
    }
    uint64_t old = atomic_load(sid_word(e));
    /* The number is ours again but we never saw it closed: closed behind
     * our back (glibc-internal close, raw syscall) or a racing close hook
     * that has not recorded yet. */
    if (old & CW_SID_OPEN)
        cw_on_vanished(fd, old);
    uint64_t sid = atomic_fetch_add((_Atomic uint64_t *)&cw.hdr->next_sid, 1);
    uint64_t now = cw_now();
    e->shut_how = 0;
    e->flags = origin == CW_ORIGIN_ACCEPT ? CW_FD_CONNECTED : 0;
    e->family = (uint16_t)family;
    e->type = (uint16_t)type;
    e->origin = (uint8_t)origin;
    e->tcp_state = 0;
    e->protocol = (uint16_t)protocol;
    e->inode = inode ? inode : fd_inode(fd);
    memset(&e->local, 0, sizeof e->local);
    memset(&e->peer, 0, sizeof e->peer);
    e->open_ns = now;
    e->eof_ns = e->close_ns = e->close_wait_ns = 0;
    e->state_ns = now;
    e->open_stack = stack;
    e->eof_stack = e->close_stack = 0;
    e->eof_count = 0;
    e->open_tid = cw_tid();
    if (src_fd >= 0 && origin == CW_ORIGIN_DUP) {
        struct cw_fd_entry *src = cw_fd(src_fd);
        if (src) {
            e->local = src->local;
            e->peer = src->peer;
            e->flags = src->flags & ~CW_FD_FROM_FORK;
            e->eof_ns = src->eof_ns;
        }
    }
    if (seen) { /* what an adopter learnt of it, there before anyone can look */
        e->local = seen->local;
        e->peer = seen->peer;
        e->flags |= seen->flags;
    }
    atomic_store_explicit(sid_word(e), sid | CW_SID_OPEN, memory_order_release);
    atomic_fetch_add_explicit(sockets_open(), 1, memory_order_relaxed);
    note_hwm(fd);
    cw_event_at(now, CW_EV_OPEN, fd, sid, stack, cw_open_arg(origin, family, type), src_fd,
                (int64_t)e->inode);
}

void cw_on_tcp_state(int fd, struct cw_fd_entry *e, uint64_t sid, uint8_t state, uint64_t now,
                     uint64_t fin_ns)
{
    if (e->tcp_state == state)
        return;
    uint8_t old = e->tcp_state;
    e->tcp_state = state;
    e->state_ns = now;
    int first_close_wait = state == CW_TCP_CLOSE_WAIT && !e->close_wait_ns;
    fin_ns = cw_fin_since_open(fin_ns, e->open_ns, e->origin == CW_ORIGIN_UNTRACKED);
    if (first_close_wait)
        e->close_wait_ns = fin_ns && fin_ns < now ? fin_ns : now;
    /* In the sampler, the program may have closed that fd and opened
     * another socket there meanwhile (its open clears these fields before
     * it publishes the new sid): the newcomer must not keep our state. */
    if (atomic_load(sid_word(e)) != sid) {
        e->tcp_state = 0;
        if (first_close_wait)
            e->close_wait_ns = 0;
        return;
    }
    cw_event(CW_EV_STATE, fd, sid & ~CW_SID_OPEN, 0, state, old, 0);
}

/* cw_enter for the calls that create a socket: the first one starts
 * recording. */
static int enter_opening(void)
{
    if (CW_UNLIKELY(!cw.hdr) && !cw_nesting && !cw_recording_start())
        return 0;
    return cw_enter();
}

/* The sampler looks for TCP CLOSE_WAIT: a program that only ever uses unix
 * or UDP sockets never starts one. */
static void sampler_for(int family, int type)
{
    if (cw_is_tcp(family, type & 0xf))
        cw_sampler_start();
}

void cw_on_open(int fd, int origin, int family, int type, int protocol, int src_fd)
{
    if (!enter_opening())
        return;
    int saved = errno;
    /* socket() and socketpair() types carry SOCK_NONBLOCK (04000) and
     * SOCK_CLOEXEC (02000000) (libuv, nginx, Go's netpoll all pass them):
     * keep only the type, the kernel's SOCK_TYPE_MASK, or a non-blocking
     * TCP socket would not count as SOCK_STREAM anywhere. */
    record_open(fd, origin, family, type & 0xf, protocol, src_fd, cw_stack(), 0, NULL);
    errno = saved;
    sampler_for(family, type);
    cw_leave();
}

void cw_on_adopt(int fd, int origin, int family, int type, uint64_t inode,
                 const struct cw_fd_entry *seen)
{
    /* Opened by code we never saw: no stack (ours would be the constructor's
     * or the sampler's), and the inode comes from the caller, whose fd
     * table may not be the program's (the sampler's is private). */
    int saved = errno;
    record_open(fd, origin, family, type & 0xf, 0, -1, 0, inode, seen);
    errno = saved;
    sampler_for(family, type);
}

/* A socket in this process's own fd table that no hook saw made: its
 * family and type asked of the fd (0 if it is not a socket). */
static int socket_kind(int fd, int *family, int *type)
{
    socklen_t l1 = sizeof *family, l2 = sizeof *type;
    *family = *type = 0;
    return syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_DOMAIN, family, &l1) == 0 &&
           syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_TYPE, type, &l2) == 0;
}

/* Records such a socket with both its ends, asked of the fd too. */
static void record_found(int fd, int origin, int family, int type, uint32_t stack)
{
    record_open(fd, origin, family, type & 0xf, 0, -1, stack, 0, NULL);
    struct cw_fd_entry *e = cw_fd(fd);
    if (!e)
        return;
    fill_addr(fd, &e->local, SYS_getsockname);
    if (fill_addr(fd, &e->peer, SYS_getpeername))
        e->flags |= CW_FD_CONNECTED;
}

void cw_on_found(int fd, int origin)
{
    int family, type, saved = errno;
    if (socket_kind(fd, &family, &type)) {
        record_found(fd, origin, family, type, 0);
        sampler_for(family, type);
    }
    errno = saved;
}

/* Whether a is a wildcard address (INADDR_ANY, in6addr_any). */
static int addr_is_any(const struct cw_addr *a)
{
    size_t n = a->family == AF_INET ? 4 : 16;
    for (size_t i = 0; i < n; i++)
        if (a->bytes[i])
            return 0;
    return 1;
}

void cw_on_accept(int lfd, int fd, const struct sockaddr *peer, socklen_t peer_len)
{
    if (!enter_opening())
        return;
    int saved = errno;
    struct cw_fd_entry *l = cw_fd(lfd);
    int family = 0, type = SOCK_STREAM;
    int listener_known = l && (l->sid & CW_SID_OPEN);
    if (listener_known) {
        family = l->family;
        type = l->type;
    } else {
        socklen_t sl = sizeof family;
        syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_DOMAIN, &family, &sl);
    }
    record_open(fd, CW_ORIGIN_ACCEPT, family, type, 0, lfd, cw_stack(), 0, NULL);
    struct cw_fd_entry *e = cw_fd(fd);
    if (e) {
        /* The local address is the listener's unless it listens on a
         * wildcard (or we never saw it bound): only then ask the kernel. */
        if (listener_known && (l->local.family == AF_INET || l->local.family == AF_INET6) &&
            !addr_is_any(&l->local))
            e->local = l->local;
        else
            fill_addr(fd, &e->local, SYS_getsockname);
        if (peer)
            cw_addr_from_sockaddr(&e->peer, peer, peer_len);
        else
            fill_addr(fd, &e->peer, SYS_getpeername);
    }
    errno = saved;
    if (family == AF_INET || family == AF_INET6)
        cw_sampler_start();
    cw_leave();
}

void cw_on_connect(int fd, const struct sockaddr *peer, socklen_t len, int ret, int err)
{
    struct cw_fd_entry *e = cw_fd(fd);
    if (!e || !(e->sid & CW_SID_OPEN) || !cw_enter())
        return;
    int saved = errno;
    if (ret == 0 || err == EINPROGRESS || err == EAGAIN || err == EINTR) {
        e->flags |= CW_FD_CONNECTED;
        cw_addr_from_sockaddr(&e->peer, peer, len);
        fill_addr(fd, &e->local, SYS_getsockname);
    }
    cw_event(CW_EV_CONNECT, fd, e->sid & ~CW_SID_OPEN, cw_stack(), ret, ret ? err : 0, 0);
    errno = saved;
    cw_leave();
}

void cw_on_listen(int fd)
{
    struct cw_fd_entry *e = cw_fd(fd);
    if (e && (e->sid & CW_SID_OPEN)) {
        int saved = errno;
        e->flags |= CW_FD_LISTENING;
        fill_addr(fd, &e->local, SYS_getsockname);
        errno = saved;
    }
}

void cw_on_open_failed(int call, int err)
{
    if ((err != EMFILE && err != ENFILE) || !enter_opening())
        return;
    cw_event(CW_EV_ERROR, -1, 0, cw_stack(), err, call, cw.hdr->sockets_open);
    errno = err; /* the failed call's errno, which is what errno held */
    cw_leave();
}

/*
 * The only close stack a report shows is a late close's (see
 * CW_PROMPT_CLOSE_NS): a prompt close, what every correct server does a
 * thousand times a second, skips the backtrace. *stack is taken once, for
 * the first late socket, and so is the question whether the process's
 * teardown is what closes it (*at_exit: -1 not asked yet).
 */
static void record_close(int fd, uint64_t sid, int how, uint32_t *stack, int *at_exit, int other)
{
    struct cw_fd_entry *e = cw_fd(fd);
    uint64_t now = cw_now();
    uint64_t fin = cw_peer_fin_ns(e->eof_ns, e->close_wait_ns);
    uint16_t flags = 0;
    if (fin && now > fin + CW_PROMPT_CLOSE_NS) {
        if (!*stack)
            *stack = cw_stack();
        if (*at_exit < 0)
            *at_exit = cw_in_teardown(*stack);
        flags = *at_exit ? CW_EVF_AT_EXIT : 0;
    }
    /* If the number was reused meanwhile, the opener already retired our
     * socket; the event still says who closed it. */
    if (retire(e, sid)) {
        e->close_ns = now;
        e->close_stack = *stack;
        if (flags & CW_EVF_AT_EXIT)
            e->flags |= CW_FD_CLOSED_AT_EXIT;
    }
    cw_event_flagged(now, flags, CW_EV_CLOSE, fd, sid & ~CW_SID_OPEN, *stack, how, e->eof_count,
                     other);
}

void cw_on_close(int fd, uint64_t sid_before, int how, int ret, int err, int other)
{
    if (!cw_fd(fd) || !cw_enter())
        return;
    int saved = errno;
    if (ret == -1 && err == EBADF) {
        if (!(sid_before & CW_SID_OPEN))
            cw_event(CW_EV_DOUBLE_CLOSE, fd, sid_before, cw_stack(), ret, err, -1);
    } else if (sid_before & CW_SID_OPEN) {
        /* Any result but EBADF means the fd is gone (Linux closes even on EINTR). */
        uint32_t stack = 0;
        int at_exit = -1;
        record_close(fd, sid_before, how, &stack, &at_exit, other);
    }
    errno = saved;
    cw_leave();
}

void cw_on_close_range(unsigned first, unsigned last, int how)
{
    int hwm = cw.hdr ? cw_fd_hwm() : 0;
    if (hwm <= 0 || first >= (unsigned)hwm || !cw_enter())
        return;
    if (last >= (unsigned)hwm)
        last = (unsigned)hwm - 1;
    int saved = errno;
    uint32_t stack = 0; /* one stack for the whole sweep */
    int at_exit = -1;
    for (unsigned fd = first; fd <= last; fd++) {
        uint64_t sid = cw_sid_before((int)fd);
        if (sid & CW_SID_OPEN)
            record_close((int)fd, sid, how, &stack, &at_exit, -1);
    }
    errno = saved;
    cw_leave();
}

void cw_on_dup(int oldfd, int newfd, uint64_t newfd_sid_before)
{
    int saved = errno;
    if (newfd_sid_before & CW_SID_OPEN) /* dup2 over a socket closes it */
        cw_on_close(newfd, newfd_sid_before, CW_CLOSE_DUP2, 0, 0, oldfd);
    struct cw_fd_entry *src = cw_fd(oldfd);
    if (src && (src->sid & CW_SID_OPEN))
        cw_on_open(newfd, CW_ORIGIN_DUP, src->family, src->type, src->protocol, oldfd);
    errno = saved;
}

void cw_on_eof(int fd, int how)
{
    struct cw_fd_entry *e = cw_fd(fd);
    if (!e || !(e->sid & CW_SID_OPEN) || e->type != SOCK_STREAM)
        return;
    if (how != CW_EOF_READ && !(e->flags & CW_FD_CONNECTED))
        return; /* HUP on a socket never connected is not a peer FIN */
    if (how == CW_EOF_READ)
        atomic_fetch_add_explicit((_Atomic uint32_t *)&e->eof_count, 1, memory_order_relaxed);
    if (e->eof_ns || !cw_enter())
        return;
    int saved = errno;
    uint64_t now = cw_now();
    e->eof_ns = now;
    if (how != CW_EOF_READ)
        e->flags |= CW_FD_EOF_POLLED;
    e->eof_stack = cw_stack();
    cw_event_at(now, CW_EV_EOF, fd, e->sid & ~CW_SID_OPEN, e->eof_stack, how, 0, 0);
    errno = saved;
    cw_leave();
}

void cw_on_shutdown(int fd, int how, int ret)
{
    struct cw_fd_entry *e = cw_fd(fd);
    if (!e || !(e->sid & CW_SID_OPEN) || how < 0 || how > 2 || !cw_enter())
        return;
    int saved = errno;
    if (ret == 0) {
        e->shut_how |= 1u << how;
        if (how == SHUT_RD || how == SHUT_RDWR)
            e->flags |= CW_FD_SHUT_RD;
        if (how == SHUT_WR || how == SHUT_RDWR)
            e->flags |= CW_FD_SHUT_WR;
    }
    cw_event(CW_EV_SHUTDOWN, fd, e->sid & ~CW_SID_OPEN, cw_stack(), how, ret, 0);
    errno = saved;
    cw_leave();
}

void cw_on_scm_rights(const struct msghdr *msg)
{
    if (!msg->msg_control || msg->msg_controllen < sizeof(struct cmsghdr))
        return;
    int saved = errno;
    for (struct cmsghdr *c = CMSG_FIRSTHDR((struct msghdr *)msg); c;
         c = CMSG_NXTHDR((struct msghdr *)msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        const int *fds = (const int *)CMSG_DATA(c);
        for (size_t i = 0; i < n; i++) {
            int fd, family, type;
            memcpy(&fd, fds + i, sizeof fd);
            if (!socket_kind(fd, &family, &type) || !enter_opening())
                continue;
            record_found(fd, CW_ORIGIN_RECEIVED, family, type, cw_stack());
            sampler_for(family, type);
            cw_leave();
        }
    }
    errno = saved;
}

/*
 * epoll hands back the user's data word, not the fd. Remember, per fd, the
 * data it was last registered with (epdata), and a small open-addressing map
 * from data to fd for programs that register pointers. A map hit counts only
 * if epdata[fd] still holds that data, so stale slots are harmless.
 */
#define EPMAP_SLOTS  (1u << 16)
#define EPMAP_PROBES 16
struct epmap_slot {
    _Atomic uint64_t key;
    _Atomic int32_t fd;
};
static uint64_t *epdata;
static struct epmap_slot *epmap;

void cw_epoll_init(void)
{
    if (epdata || !cw.hdr)
        return;
    void *a = mmap(NULL, (size_t)cw.hdr->fd_cap * sizeof *epdata, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    void *b = mmap(NULL, EPMAP_SLOTS * sizeof *epmap, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (a == MAP_FAILED || b == MAP_FAILED)
        return;
    epmap = b;
    epdata = a;
}

static int epdata_fd_matches(int fd, uint64_t data)
{
    return fd >= 0 && (uint32_t)fd < cw.hdr->fd_cap && epdata[fd] == data;
}

void cw_epoll_register(int fd, uint64_t data)
{
    struct cw_fd_entry *e = cw_fd(fd);
    if (!e || !(e->sid & CW_SID_OPEN) || !epdata)
        return;
    epdata[fd] = data;
    if (data == (uint64_t)(uint32_t)fd)
        return; /* data.fd == fd: found without the map */
    uint32_t h = (uint32_t)cw_hash64(data);
    for (uint32_t i = 0; i < EPMAP_PROBES; i++) {
        struct epmap_slot *s = &epmap[(h + i) & (EPMAP_SLOTS - 1)];
        uint64_t k = atomic_load_explicit(&s->key, memory_order_acquire);
        int32_t sfd = atomic_load_explicit(&s->fd, memory_order_relaxed);
        if (k == data || k == 0 || !epdata_fd_matches(sfd, k)) {
            atomic_store_explicit(&s->fd, fd, memory_order_relaxed);
            atomic_store_explicit(&s->key, data, memory_order_release);
            return;
        }
    }
}

static int epoll_data_to_fd(uint64_t data)
{
    int32_t low = (int32_t)(uint32_t)data;
    if (data == (uint64_t)(uint32_t)low && epdata_fd_matches(low, data))
        return low;
    uint32_t h = (uint32_t)cw_hash64(data);
    for (uint32_t i = 0; i < EPMAP_PROBES; i++) {
        struct epmap_slot *s = &epmap[(h + i) & (EPMAP_SLOTS - 1)];
        if (atomic_load_explicit(&s->key, memory_order_acquire) == data) {
            int fd = atomic_load_explicit(&s->fd, memory_order_relaxed);
            return epdata_fd_matches(fd, data) ? fd : -1;
        }
    }
    return -1;
}

void cw_on_epoll_events(const struct epoll_event *ev, int n)
{
    if (!epdata)
        return;
    for (int i = 0; i < n; i++) {
        uint32_t what = ev[i].events;
        if (CW_UNLIKELY(what & (EPOLLRDHUP | EPOLLHUP))) {
            int fd = epoll_data_to_fd(ev[i].data.u64);
            if (fd >= 0)
                cw_on_eof(fd, (what & EPOLLRDHUP) ? CW_EOF_RDHUP : CW_EOF_HUP);
        }
    }
}

void cw_on_poll_events(const struct pollfd *fds, nfds_t n)
{
    for (nfds_t i = 0; i < n; i++)
        if (CW_UNLIKELY(fds[i].revents & (POLLRDHUP | POLLHUP)))
            cw_on_eof(fds[i].fd, (fds[i].revents & POLLRDHUP) ? CW_EOF_RDHUP : CW_EOF_HUP);
}

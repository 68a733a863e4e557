/*
 * sampler.c - what the program never tells us, asked of the kernel.
 *
 * A background thread (started with the first tracked socket, restarted
 * lazily after fork, every CLOSEWATCH_SAMPLE_MS, 0 = off) asks sock_diag for
 * the TCP sockets in CLOSE_WAIT and marks ours in the fd table: a socket
 * whose EOF the program never reads is caught this way. Every few samples it
 * also reconciles the table with /proc/self/fd, finding sockets created
 * behind our back (untracked) and tracked ones closed behind our back
 * (vanished). At start it records the sockets inherited across exec, and at
 * exit it snapshots the TCP state of every open socket.
 *
 * The sampler thread blocks every signal, so the program's handlers never
 * run on it, and it only uses raw system calls on fds it opens and closes
 * within one sample.
 */
#include "cw.h"
#include "../common/sock_diag.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RECONCILE_EVERY 5
#define SAMPLE_DUTY     50 /* sleep at least 50x as long as a sample took */

/* A Go program creates every socket behind our back: reconcile each round. */
static unsigned reconcile_every = RECONCILE_EVERY;

#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

/*
 * The sampler thread has an fd table of its own, empty at start (see
 * sampler_main): the fds it opens (netlink socket, /proc/self/fd) never take
 * the program's lowest free numbers or count against its limit, and it never
 * holds a reference to the program's files, so a program thread that
 * unshares its table (CLOSE_RANGE_UNSHARE, unshare(CLONE_FILES)) still really
 * closes what it closes. The program's fds are reached through /proc/self/fd
 * (the thread group leader's table) and copied in with pidfd_getfd to be
 * asked about.
 */
static __thread int private_table __attribute__((tls_model("initial-exec")));
static int self_pidfd = -1; /* in the sampler's private table */

struct kstate {
    uint64_t inode;
    uint8_t state;
};

struct kstates {
    struct kstate *v;
    size_t n, cap;
};

static int collect(void *ctx, const struct inet_diag_msg *m)
{
    struct kstates *ks = ctx;
    if (ks->n == ks->cap) {
        size_t cap = ks->cap ? ks->cap * 2 : 256;
        struct kstate *v = realloc(ks->v, cap * sizeof *v);
        if (!v)
            return 1;
        ks->v = v;
        ks->cap = cap;
    }
    ks->v[ks->n].inode = m->idiag_inode;
    ks->v[ks->n].state = m->idiag_state;
    ks->n++;
    return 0;
}

static int by_inode(const void *a, const void *b)
{
    uint64_t x = ((const struct kstate *)a)->inode, y = ((const struct kstate *)b)->inode;
    return x < y ? -1 : x > y;
}

static int is_tcp(const struct cw_fd_entry *e)
{
    return (e->family == AF_INET || e->family == AF_INET6) && e->type == SOCK_STREAM;
}

static void set_state(int fd, struct cw_fd_entry *e, uint64_t sid, uint8_t state, uint64_t now)
{
    if (e->tcp_state == state)
        return;
    uint8_t old = e->tcp_state;
    e->tcp_state = state;
    e->state_ns = now;
    if (state == CW_TCP_CLOSE_WAIT && !e->close_wait_ns)
        e->close_wait_ns = now;
    cw_event(CW_EV_STATE, fd, sid & ~CW_SID_OPEN, 0, state, old, 0);
}

/*
 * Marks the kernel state of our open TCP sockets. With only CLOSE_WAIT asked
 * for, a socket that is no longer listed has left CLOSE_WAIT.
 */
/*
 * With few sockets open, asking each one (TCP_INFO on a copy fetched with
 * pidfd_getfd) is far cheaper than a sock_diag dump, which walks every TCP
 * socket of the host, TIME_WAIT ones included. Returns 0 if it could not
 * ask (then the dump is used).
 */
#define PER_SOCKET_MAX 64

static int sample_close_wait_per_socket(void)
{
    if (!private_table || self_pidfd < 0)
        return 0;
    int hwm = atomic_load(&cw.fd_hwm), open_tcp = 0;
    for (int fd = 0; fd < hwm && open_tcp <= PER_SOCKET_MAX; fd++) {
        struct cw_fd_entry *e = cw_fd(fd);
        open_tcp += (e->sid & CW_SID_OPEN) && is_tcp(e);
    }
    if (open_tcp > PER_SOCKET_MAX)
        return 0;
    uint64_t now = cw_now();
    for (int fd = 0; fd < hwm; fd++) {
        struct cw_fd_entry *e = cw_fd(fd);
        uint64_t sid = atomic_load((_Atomic uint64_t *)&e->sid);
        if (!(sid & CW_SID_OPEN) || !is_tcp(e))
            continue;
        int q = (int)syscall(SYS_pidfd_getfd, self_pidfd, fd, 0);
        if (q < 0)
            continue;
        struct tcp_info ti;
        socklen_t len = sizeof ti;
        struct stat st;
        /* The fd may have been closed and reused since we read the table. */
        if (syscall(SYS_fstat, q, &st) == 0 && (uint64_t)st.st_ino == e->inode &&
            syscall(SYS_getsockopt, q, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0) {
            if (ti.tcpi_state == CW_TCP_CLOSE_WAIT)
                set_state(fd, e, sid, CW_TCP_CLOSE_WAIT, now);
            else if (e->tcp_state == CW_TCP_CLOSE_WAIT)
                set_state(fd, e, sid, CW_TCP_UNKNOWN, now);
        }
        syscall(SYS_close, q);
    }
    return 1;
}

static void sample_states(uint32_t states)
{
    if (states == CW_TCP_STATE_BIT(CW_TCP_CLOSE_WAIT) && sample_close_wait_per_socket())
        return;
    struct kstates ks = {0};
    if (cw_sock_diag_dump(states, collect, &ks) != 0) {
        free(ks.v);
        return;
    }
    qsort(ks.v, ks.n, sizeof *ks.v, by_inode);
    uint64_t now = cw_now();
    int hwm = atomic_load(&cw.fd_hwm);
    for (int fd = 0; fd < hwm; fd++) {
        struct cw_fd_entry *e = cw_fd(fd);
        uint64_t sid = e ? atomic_load((_Atomic uint64_t *)&e->sid) : 0;
        if (!(sid & CW_SID_OPEN) || !is_tcp(e))
            continue;
        struct kstate key = {.inode = e->inode};
        const struct kstate *k = ks.n ? bsearch(&key, ks.v, ks.n, sizeof key, by_inode) : NULL;
        if (k)
            set_state(fd, e, sid, k->state, now);
        else if (states & CW_TCP_STATE_BIT(e->tcp_state))
            set_state(fd, e, sid, CW_TCP_UNKNOWN, now);
    }
    free(ks.v);
}

/* /proc/self/fd: calls back with each fd number (raw getdents64, no malloc). */
static void for_each_fd(void (*fn)(int fd, void *ctx), void *ctx)
{
    int dir =
        (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return;
    char buf[8192];
    for (;;) {
        long n = syscall(SYS_getdents64, dir, buf, sizeof buf);
        if (n <= 0)
            break;
        for (long off = 0; off < n;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            off += d->d_reclen;
            if (d->d_name[0] < '0' || d->d_name[0] > '9')
                continue;
            int fd = atoi(d->d_name);
            if (private_table || fd != dir) /* dir is in our table, not the listed one */
                fn(fd, ctx);
        }
    }
    syscall(SYS_close, dir);
}

static uint64_t socket_inode(int fd)
{
    char path[64], link[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    long n = syscall(SYS_readlinkat, AT_FDCWD, path, link, sizeof link - 1);
    if (n <= 8)
        return 0;
    link[n] = 0;
    if (strncmp(link, "socket:[", 8))
        return 0;
    return strtoull(link + 8, NULL, 10);
}

/* Records an open socket that no hook told us about. */
static void adopt(int fd, int origin)
{
    int q = fd; /* fd as we can ask about it: a copy in our private table */
    if (private_table) {
        q = self_pidfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, self_pidfd, fd, 0);
        if (q < 0)
            return;
    }
    int family = 0, type = 0;
    socklen_t l1 = sizeof family, l2 = sizeof type;
    struct stat st;
    if (syscall(SYS_getsockopt, q, SOL_SOCKET, SO_DOMAIN, &family, &l1) != 0 ||
        syscall(SYS_getsockopt, q, SOL_SOCKET, SO_TYPE, &type, &l2) != 0 ||
        syscall(SYS_fstat, q, &st) != 0)
        goto out;
    cw_on_adopt(fd, origin, family, type, (uint64_t)st.st_ino);
    struct cw_fd_entry *e = cw_fd(fd);
    if (!e)
        goto out;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (syscall(SYS_getsockname, q, &ss, &len) == 0)
        cw_addr_from_sockaddr(&e->local, (struct sockaddr *)&ss, len);
    len = sizeof ss;
    if (syscall(SYS_getpeername, q, &ss, &len) == 0) {
        cw_addr_from_sockaddr(&e->peer, (struct sockaddr *)&ss, len);
        e->flags |= CW_FD_CONNECTED;
    }
out:
    if (q != fd)
        syscall(SYS_close, q);
}

/* Whether the program's fd is closed, asked of /proc (not of our table). */
static int program_fd_gone(int fd)
{
    char path[64], link[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    return syscall(SYS_readlinkat, AT_FDCWD, path, link, sizeof link) == -1 && errno == ENOENT;
}

static void inherit_one(int fd, void *from_fork)
{
    struct cw_fd_entry *e = cw_fd(fd);
    uint64_t ino = socket_inode(fd);
    if (!ino || (e && (e->sid & CW_SID_OPEN) && e->inode == ino))
        return;
    adopt(fd, CW_ORIGIN_INHERITED);
    if (e && from_fork)
        e->flags |= CW_FD_FROM_FORK;
}

void cw_scan_inherited(int from_fork)
{
    for_each_fd(inherit_one, from_fork ? (void *)1 : NULL);
}

/*
 * Reconciliation, in two passes so a socket caught between a real call and
 * its hook is not misreported: an unknown socket fd becomes untracked only if
 * it is still there, same inode, one reconciliation later.
 */
struct reconcile {
    uint8_t *seen;             /* bitmap of fds listed this pass */
    uint64_t *candidate_inode; /* per fd: unknown socket seen last pass */
    uint64_t *missing_sid;     /* per fd: tracked socket absent last pass */
    uint64_t *since;           /* per fd: when that candidacy began */
};

/* A thread of an overloaded program can sit between the kernel call and its
 * hook for a while: only a discrepancy seen on two passes AND this old is
 * taken for one. */
#define RECONCILE_CONFIRM_NS 500000000ull

static struct reconcile rc;

static void reconcile_one(int fd, void *ctx)
{
    (void)ctx;
    struct cw_fd_entry *e = cw_fd(fd);
    if (!e)
        return;
    rc.seen[fd / 8] |= (uint8_t)(1u << (fd % 8));
    if (e->sid & CW_SID_OPEN) {
        rc.candidate_inode[fd] = 0;
        return;
    }
    uint64_t ino = socket_inode(fd);
    if (ino && rc.candidate_inode[fd] == ino) {
        if (cw_now() - rc.since[fd] < RECONCILE_CONFIRM_NS)
            return;
        rc.candidate_inode[fd] = 0;
        adopt(fd, CW_ORIGIN_UNTRACKED);
    } else {
        rc.candidate_inode[fd] = ino;
        rc.since[fd] = cw_now();
    }
}

static void reconcile(void)
{
    uint32_t cap = cw.hdr->fd_cap;
    if (!rc.seen) {
        rc.seen = calloc(cap / 8 + 1, 1);
        rc.candidate_inode = calloc(cap, sizeof *rc.candidate_inode);
        rc.missing_sid = calloc(cap, sizeof *rc.missing_sid);
        rc.since = calloc(cap, sizeof *rc.since);
        if (!rc.seen || !rc.candidate_inode || !rc.missing_sid || !rc.since)
            return;
    }
    int hwm = atomic_load(&cw.fd_hwm);
    memset(rc.seen, 0, (size_t)hwm / 8 + 1);
    for_each_fd(reconcile_one, NULL);
    for (int fd = 0; fd < hwm; fd++) {
        struct cw_fd_entry *e = cw_fd(fd);
        uint64_t sid = atomic_load((_Atomic uint64_t *)&e->sid);
        if (!(sid & CW_SID_OPEN) || (rc.seen[fd / 8] & (1u << (fd % 8)))) {
            rc.missing_sid[fd] = 0;
            continue;
        }
        /* Gone from /proc/self/fd. A close() may be between the kernel and
         * its hook right now: only a socket still missing, with the same
         * sid, one reconciliation later was closed behind our back. */
        if (rc.missing_sid[fd] != sid) {
            rc.missing_sid[fd] = sid;
            rc.since[fd] = cw_now();
            continue;
        }
        if (cw_now() - rc.since[fd] < RECONCILE_CONFIRM_NS)
            continue;
        rc.missing_sid[fd] = 0;
        if (program_fd_gone(fd) &&
            atomic_compare_exchange_strong((_Atomic uint64_t *)&e->sid, &sid, sid & ~CW_SID_OPEN)) {
            atomic_fetch_sub((_Atomic uint32_t *)&cw.hdr->sockets_open, 1);
            e->close_ns = cw_now();
            cw_event(CW_EV_CLOSE, fd, sid & ~CW_SID_OPEN, 0, CW_CLOSE_VANISHED, e->eof_count, -1);
        }
    }
}

static void *sampler_main(void *arg)
{
    (void)arg;
    cw_nesting = 1; /* everything this thread does is ours */
    /* A private fd table holding none of the program's files: closing "all
     * of them, unsharing first" copies none (kernel >= 5.9). */
    if (syscall(SYS_close_range, 0, ~0U, CLOSE_RANGE_UNSHARE) != 0)
        return NULL; /* no sampling rather than sharing the program's table */
    private_table = 1;
    self_pidfd = (int)syscall(SYS_pidfd_open, (long)getpid(), 0);
    pid_t pid = cw.pid;
    uint64_t period_ns = (uint64_t)cw.sample_ms * 1000000ull;
    for (unsigned round = 1;; round++) {
        struct timespec ts = {(time_t)(period_ns / 1000000000ull),
                              (long)(period_ns % 1000000000ull)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        if (!cw.hdr || cw.pid != pid)
            return NULL;
        int saved = errno;
        /* Reconcile first: a socket adopted now gets its state in this
         * round, not a whole period later (a Go program that exits in
         * between would take its CLOSE_WAIT sockets out of the report). */
        if (round % reconcile_every == 0)
            reconcile();
        /* sock_diag walks every TCP socket of the host, TIME_WAIT ones
         * included: on a busy host one query takes tens of ms. Stretch the
         * period so sampling never costs the program more than ~2% of a core. */
        uint64_t t0 = cw_now();
        if (atomic_load((_Atomic uint32_t *)&cw.hdr->sockets_open))
            sample_states(CW_TCP_STATE_BIT(CW_TCP_CLOSE_WAIT));
        uint64_t spent = cw_now() - t0;
        period_ns = (uint64_t)cw.sample_ms * 1000000ull;
        if (spent * SAMPLE_DUTY > period_ns)
            period_ns = spent * SAMPLE_DUTY;
        cw.hdr->heartbeat_mono_ns = cw_now();
        errno = saved;
    }
}

void cw_sampler_start_for_raw_syscalls(void)
{
    reconcile_every = 1;
    cw_sampler_start();
}

void cw_sampler_start(void)
{
    int idle = 0;
    if (cw.sample_ms == 0 || !cw.hdr ||
        !atomic_compare_exchange_strong(&cw.sampler_state, &idle, 1))
        return;
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_t t;
    if (pthread_create(&t, &attr, sampler_main, NULL) != 0)
        atomic_store(&cw.sampler_state, 0);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void cw_sampler_after_fork(void)
{
    atomic_store(&cw.sampler_state, 0);
    self_pidfd = -1; /* the parent sampler's, in a table this process lacks */
    rc.seen = NULL;  /* the parent's buffers, copied: leave them, start fresh */
    rc.candidate_inode = NULL;
    rc.missing_sid = NULL;
    rc.since = NULL;
}

/*
 * At exit, the state of every socket still open, asked of each one directly:
 * this runs on a program thread, in the program's own fd table. A sock_diag
 * dump instead would walk every TCP socket of the host, thousands of
 * TIME_WAIT ones after a busy run, for a few of ours.
 */
void cw_final_snapshot(void)
{
    uint64_t now = cw_now();
    int hwm = atomic_load(&cw.fd_hwm);
    for (int fd = 0; fd < hwm && cw.hdr->sockets_open; fd++) {
        struct cw_fd_entry *e = cw_fd(fd);
        uint64_t sid = atomic_load((_Atomic uint64_t *)&e->sid);
        struct tcp_info ti;
        socklen_t len = sizeof ti;
        struct stat st;
        if ((sid & CW_SID_OPEN) && is_tcp(e) && syscall(SYS_fstat, fd, &st) == 0 &&
            (uint64_t)st.st_ino == e->inode &&
            syscall(SYS_getsockopt, fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0)
            set_state(fd, e, sid, ti.tcpi_state, now);
    }
}

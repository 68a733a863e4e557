/*
 * sampler.c - what the program never tells us, asked of the kernel.
 *
 * The sampler is a process of its own: libclosewatch.so executed as a
 * program (helper.c), started with the first tracked TCP socket, waking
 * every CLOSEWATCH_SAMPLE_MS (0 = never started). It maps the program's
 * ring, asks the kernel which of the program's sockets sit in CLOSE_WAIT (a
 * socket whose EOF the program never reads is caught this way) and marks
 * them in the fd table; every few rounds it also reconciles the table with
 * /proc/PID/fd, finding sockets created behind our back (untracked) and
 * tracked ones closed behind our back (vanished).
 *
 * Why not a thread: a second thread makes glibc take its multi-threaded
 * path in every cancellable call of the program (read, write, accept,
 * close: +20 ns each, measured), and shares the program's fd table. The
 * process is started through a short-lived middle child, so that it is not
 * the program's child (no SIGCHLD, nothing new for its wait()); it holds no
 * fds of the program and no copy of its memory (exec'd at once), keeps all
 * signals blocked, and leaves when the program exits (pidfd) or execs.
 *
 * In the program itself, this file keeps what needs its own fd table: the
 * sockets inherited across exec or fork, found at start, and the state of
 * every open socket at exit.
 */
#include "cw.h"
#include "../common/sock_diag.h"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RECONCILE_EVERY 5
#define SAMPLE_DUTY     50 /* sleep at least 50x as long as a sample took */

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

/*
 * Where the program's fds are: our own table (in the program), or, in the
 * sampler process, /proc/PID/fd to list them. The sampler never takes a
 * reference to one of the program's sockets (no pidfd_getfd): a copy in its
 * hands would keep a socket the program closes alive, its epoll
 * registrations firing and its port bound. It asks sock_diag instead.
 */
static struct {
    int remote;
    char fd_dir[48];
} prog = {0, "/proc/self/fd"};

struct kstate {
    uint64_t inode;
    uint64_t fin_ns; /* CLOSE_WAIT: the kernel's date of the peer's FIN, or 0 */
    uint8_t state;
};

struct kstates {
    struct kstate *v;
    size_t n, cap;
};

static uint64_t fin_from_age(uint32_t last_ack_ms)
{
    return cw_fin_from_age(cw_now(), last_ack_ms);
}

static int collect(void *ctx, const struct inet_diag_msg *m, uint32_t last_ack_ms)
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
    ks->v[ks->n].fin_ns = fin_from_age(last_ack_ms);
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

/* fin_ns: for CLOSE_WAIT, the kernel's date of the FIN when it gave one:
 * an unread CLOSE_WAIT is dated from it, not from this round. */
static void set_state(int fd, struct cw_fd_entry *e, uint64_t sid, uint8_t state, uint64_t now,
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
    if (atomic_load((_Atomic uint64_t *)&e->sid) != sid) {
        e->tcp_state = 0;
        if (first_close_wait)
            e->close_wait_ns = 0;
        return;
    }
    cw_event(CW_EV_STATE, fd, sid & ~CW_SID_OPEN, 0, state, old, 0);
}

/* The two ends of e as sock_diag names them; 0 if they are not both known. */
static int sock_id_of(const struct cw_fd_entry *e, struct cw_sock_id *id)
{
    const struct cw_addr *l = &e->local, *p = &e->peer;
    if (l->family != e->family || p->family != e->family || !l->port || !p->port)
        return 0;
    memset(id, 0, sizeof *id);
    id->family = e->family;
    size_t n = e->family == AF_INET ? 4 : 16;
    memcpy(id->local, l->bytes, n);
    memcpy(id->peer, p->bytes, n);
    id->local_port = l->port;
    id->peer_port = p->port;
    id->scope_id = p->scope_id;
    return 1;
}

/*
 * With few sockets open, asking for each one by its two ends is far cheaper
 * than a sock_diag dump, which walks every TCP socket of the host, TIME_WAIT
 * ones included. Returns 0 if it could not ask about every one (then the
 * dump is used).
 */
#define PER_SOCKET_MAX 256

static int sample_close_wait_per_socket(void)
{
    int hwm = cw_fd_hwm(), open_tcp = 0;
    for (int fd = 0; fd < hwm && open_tcp <= PER_SOCKET_MAX; fd++) {
        struct cw_fd_entry *e = cw_fd(fd);
        open_tcp += (e->sid & CW_SID_OPEN) && is_tcp(e);
    }
    if (open_tcp > PER_SOCKET_MAX)
        return 0;
    int nl = cw_sock_diag_open();
    if (nl < 0)
        return 0;
    uint64_t now = cw_now();
    int complete = 1;
    for (int fd = 0; fd < hwm; fd++) {
        struct cw_fd_entry *e = cw_fd(fd);
        uint64_t sid = atomic_load((_Atomic uint64_t *)&e->sid);
        struct cw_sock_id id;
        if (!(sid & CW_SID_OPEN) || !is_tcp(e) || (e->flags & CW_FD_LISTENING))
            continue;
        /* Not known to be connected (a connect we did not see finish, a
         * TCP Fast Open sendto), or ends unknown: the dump will say. */
        if (!(e->flags & CW_FD_CONNECTED) || !sock_id_of(e, &id)) {
            complete = 0;
            continue;
        }
        uint8_t state;
        uint64_t inode;
        uint32_t last_ack_ms;
        int r = cw_sock_diag_find(nl, &id, &state, &inode, &last_ack_ms);
        /* The ends may belong to a newer socket by now: the inode says. */
        if (r == 0 && inode == e->inode) {
            if (state == CW_TCP_CLOSE_WAIT)
                set_state(fd, e, sid, CW_TCP_CLOSE_WAIT, now, fin_from_age(last_ack_ms));
            else if (e->tcp_state == CW_TCP_CLOSE_WAIT)
                set_state(fd, e, sid, CW_TCP_UNKNOWN, now, 0);
        } else {
            /* Not found by its ends, or another socket has them: ends we
             * recorded wrong (a connect to 0.0.0.0, a transparent proxy),
             * a socket bound to a device (SO_BINDTODEVICE, a VRF), or one
             * just closed. The dump, by inode, settles it. */
            complete = 0;
        }
    }
    syscall(SYS_close, nl);
    return complete;
}

/* Marks which of our open TCP sockets are in CLOSE_WAIT; one no longer
 * listed has left it. */
static void sample_close_wait(void)
{
    if (sample_close_wait_per_socket())
        return;
    uint32_t states = CW_TCP_STATE_BIT(CW_TCP_CLOSE_WAIT);
    struct kstates ks = {0};
    if (cw_sock_diag_dump_aged(states, collect, &ks) != 0) {
        free(ks.v);
        return;
    }
    qsort(ks.v, ks.n, sizeof *ks.v, by_inode);
    uint64_t now = cw_now();
    int hwm = cw_fd_hwm();
    for (int fd = 0; fd < hwm; fd++) {
        struct cw_fd_entry *e = cw_fd(fd);
        uint64_t sid = atomic_load((_Atomic uint64_t *)&e->sid);
        if (!(sid & CW_SID_OPEN) || !is_tcp(e))
            continue;
        struct kstate key = {.inode = e->inode};
        const struct kstate *k = ks.n ? bsearch(&key, ks.v, ks.n, sizeof key, by_inode) : NULL;
        if (k)
            set_state(fd, e, sid, k->state, now, k->fin_ns);
        else if (e->tcp_state == CW_TCP_CLOSE_WAIT)
            set_state(fd, e, sid, CW_TCP_UNKNOWN, now, 0);
    }
    free(ks.v);
}

/* The program's fds, listed from /proc: calls back with each number (raw
 * getdents64, no malloc). */
static void for_each_fd(void (*fn)(int fd, void *ctx), void *ctx)
{
    int dir = (int)syscall(SYS_openat, AT_FDCWD, prog.fd_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
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
            if (prog.remote || fd != dir) /* in the program, dir is one of the listed */
                fn(fd, ctx);
        }
    }
    syscall(SYS_close, dir);
}

/* readlink of the program's fd: 0 and errno on failure. */
static long fd_link(int fd, char *link, size_t cap)
{
    char path[96];
    snprintf(path, sizeof path, "%s/%d", prog.fd_dir, fd);
    long n = syscall(SYS_readlinkat, AT_FDCWD, path, link, cap - 1);
    if (n < 0)
        return 0;
    link[n] = 0;
    return n;
}

static uint64_t socket_inode(int fd)
{
    char link[64];
    if (fd_link(fd, link, sizeof link) <= 8 || strncmp(link, "socket:[", 8))
        return 0;
    return strtoull(link + 8, NULL, 10);
}

/* Records an open socket that no hook told us about, asking the fd itself:
 * only in the program, where the fd is in our own table. */
static void adopt(int fd, int origin)
{
    int family = 0, type = 0;
    socklen_t l1 = sizeof family, l2 = sizeof type;
    struct stat st;
    if (syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_DOMAIN, &family, &l1) != 0 ||
        syscall(SYS_getsockopt, fd, SOL_SOCKET, SO_TYPE, &type, &l2) != 0 ||
        syscall(SYS_fstat, fd, &st) != 0)
        return;
    cw_on_adopt(fd, origin, family, type, (uint64_t)st.st_ino);
    struct cw_fd_entry *e = cw_fd(fd);
    if (!e)
        return;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (syscall(SYS_getsockname, fd, &ss, &len) == 0)
        cw_addr_from_sockaddr(&e->local, (struct sockaddr *)&ss, len);
    len = sizeof ss;
    if (syscall(SYS_getpeername, fd, &ss, &len) == 0) {
        cw_addr_from_sockaddr(&e->peer, (struct sockaddr *)&ss, len);
        e->flags |= CW_FD_CONNECTED;
    }
}

/*
 * In the sampler, a socket created behind our back is adopted from what
 * sock_diag says about its inode: TCP sockets (Go's, io_uring's), with
 * their addresses and state. Others (unix, UDP) are left alone: they are
 * never in CLOSE_WAIT.
 */
#define BY_INODE_MAX 256
static struct {
    int fd[BY_INODE_MAX];
    uint64_t inode[BY_INODE_MAX];
    int n;
} by_inode_pending;

static void adopt_by_inode_later(int fd, uint64_t inode)
{
    if (by_inode_pending.n < BY_INODE_MAX) {
        by_inode_pending.fd[by_inode_pending.n] = fd;
        by_inode_pending.inode[by_inode_pending.n++] = inode;
    }
}

static void addr_from_diag(struct cw_addr *a, int family, const uint32_t *ip, uint16_t port_be)
{
    memset(a, 0, sizeof *a);
    a->family = (uint16_t)family;
    a->port = ntohs(port_be);
    memcpy(a->bytes, ip, family == AF_INET ? 4 : 16);
}

static int adopt_from_diag(void *ctx, const struct inet_diag_msg *m)
{
    (void)ctx;
    for (int i = 0; i < by_inode_pending.n; i++) {
        if (by_inode_pending.inode[i] != m->idiag_inode || !m->idiag_inode)
            continue;
        int fd = by_inode_pending.fd[i];
        by_inode_pending.inode[i] = 0;
        /* The program may have closed that fd and opened a tracked socket
         * there since the reconciliation: look again just before. */
        struct cw_fd_entry *cur = cw_fd(fd);
        if (!cur || (atomic_load((_Atomic uint64_t *)&cur->sid) & CW_SID_OPEN) ||
            socket_inode(fd) != m->idiag_inode)
            continue;
        cw_on_adopt(fd, CW_ORIGIN_UNTRACKED, m->idiag_family, SOCK_STREAM, m->idiag_inode);
        struct cw_fd_entry *e = cw_fd(fd);
        if (e && e->inode == m->idiag_inode) {
            addr_from_diag(&e->local, m->idiag_family, m->id.idiag_src, m->id.idiag_sport);
            if (m->idiag_state != CW_TCP_LISTEN) {
                addr_from_diag(&e->peer, m->idiag_family, m->id.idiag_dst, m->id.idiag_dport);
                e->peer.scope_id = m->id.idiag_if;
                e->flags |= CW_FD_CONNECTED;
            } else {
                e->flags |= CW_FD_LISTENING;
            }
        }
    }
    return 0;
}

static void adopt_by_inode(void)
{
    if (by_inode_pending.n)
        cw_sock_diag_dump(CW_TCP_OWNED_STATES, adopt_from_diag, NULL);
    by_inode_pending.n = 0;
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

static void note_socket(int fd, void *found)
{
    if (!*(int *)found && socket_inode(fd))
        *(int *)found = 1;
}

int cw_has_inherited_socket(void)
{
    int found = 0;
    for_each_fd(note_socket, &found);
    return found;
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
        adopt_by_inode_later(fd, ino);
    } else {
        rc.candidate_inode[fd] = ino;
        rc.since[fd] = cw_now();
    }
}

/* Whether the program's fd is closed, asked of /proc. */
static int program_fd_gone(int fd)
{
    char link[64];
    return !fd_link(fd, link, sizeof link) && errno == ENOENT;
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
    int hwm = cw_fd_hwm();
    memset(rc.seen, 0, (size_t)hwm / 8 + 1);
    for_each_fd(reconcile_one, NULL);
    adopt_by_inode();
    hwm = cw_fd_hwm(); /* adopted sockets may have raised it */
    for (int fd = 0; fd < hwm; fd++) {
        struct cw_fd_entry *e = cw_fd(fd);
        uint64_t sid = atomic_load((_Atomic uint64_t *)&e->sid);
        if (!(sid & CW_SID_OPEN) || (rc.seen[fd / 8] & (1u << (fd % 8)))) {
            rc.missing_sid[fd] = 0;
            continue;
        }
        /* Gone from the program's fd list. A close() may be between the
         * kernel and its hook right now: only a socket still missing, with
         * the same sid, one reconciliation later was closed behind our back. */
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

/* From /proc/PID/stat: field 22, the start time, tells our program from a
 * later one with its pid; fields 26-28 and 48-51 (text, stack, arguments
 * and environment addresses) make up *image, which an exec changes (the pid
 * and our ring stay). */
static int program_stat(pid_t pid, unsigned long long *start_time, unsigned long long *image,
                        int *masked)
{
    char path[48], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    long n = syscall(SYS_read, fd, buf, sizeof buf - 1);
    syscall(SYS_close, fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* comm may hold spaces and parens */
    if (!p)
        return -1;
    *image = 0;
    *masked = 1;
    for (int field = 2; *p; p++) {
        if (*p != ' ')
            continue;
        field++;
        if (field == 22) {
            *start_time = strtoull(p + 1, NULL, 10);
        } else if ((field >= 26 && field <= 28) || (field >= 48 && field <= 51)) {
            unsigned long long v = strtoull(p + 1, NULL, 10);
            *image = (*image ^ v) * 0x100000001b3ull;
            /* A process that is not dumpable (one that changed uid, say)
             * shows others zeros there (and 1 in 26, 27). */
            if (v > 1)
                *masked = 0;
        }
        if (field == 51)
            return 0;
    }
    return -1;
}

void cw_sampler_run(pid_t pid, unsigned reconcile_every, unsigned long long image)
{
    prog.remote = 1;
    snprintf(prog.fd_dir, sizeof prog.fd_dir, "/proc/%d/fd", (int)pid);
    int exit_fd = (int)syscall(SYS_pidfd_open, (long)pid, 0L);
    unsigned long long start_time = 0, t, i;
    int masked;
    /* Opened after a check that the pid is still our program's (the pidfd
     * then cannot be another's) and that it has not exec'd since it started
     * us (image: what it read of itself then; hidden from us if it is not
     * dumpable, and then only a traced exec is noticed, by exit_state). */
    if (program_stat(pid, &start_time, &i, &masked) != 0 || start_time != cw.hdr->proc_starttime ||
        (!masked && i != image))
        return;
    uint64_t period_ns = (uint64_t)cw.sample_ms * 1000000ull;
    for (unsigned round = 1;; round++) {
        struct timespec ts = {(time_t)(period_ns / 1000000000ull),
                              (long)(period_ns % 1000000000ull)};
        struct pollfd p = {.fd = exit_fd, .events = POLLIN};
        /* Without a pidfd (kernel < 5.3), a period's sleep, then /proc. */
        long r =
            syscall(SYS_ppoll, exit_fd >= 0 ? &p : NULL, exit_fd >= 0 ? 1L : 0L, &ts, NULL, 0L);
        if (r > 0 || (r < 0 && errno != EINTR)) {
            /* The program is gone. Killed, or a runtime whose exit skips our
             * destructor (Go): stamp the moment, so the analyzer judges its
             * sockets up to its death, not to our last round. */
            if (r > 0 && atomic_load((_Atomic uint32_t *)&cw.hdr->exit_state) == CW_RUNNING)
                cw.hdr->heartbeat_mono_ns = cw_now();
            return;
        }
        /* Gone, or exec'd: a traced image marks this ring EXECED and starts
         * a sampler of its own; an untraced one shows new addresses. */
        if (program_stat(pid, &t, &i, &masked) != 0 || t != start_time || (!masked && i != image) ||
            atomic_load((_Atomic uint32_t *)&cw.hdr->exit_state) != CW_RUNNING)
            return;
        /* Reconcile first: a socket adopted now gets its state in this
         * round, not a whole period later (a Go program that exits in
         * between would take its CLOSE_WAIT sockets out of the report). */
        if (round % reconcile_every == 0)
            reconcile();
        /* On a busy host a sock_diag dump takes tens of ms: stretch the
         * period so sampling never costs more than ~2% of a core. */
        uint64_t t0 = cw_now();
        if (atomic_load((_Atomic uint32_t *)&cw.hdr->sockets_open))
            sample_close_wait();
        cw_series_sample();
        uint64_t spent = cw_now() - t0;
        period_ns = (uint64_t)cw.sample_ms * 1000000ull;
        if (spent * SAMPLE_DUTY > period_ns)
            period_ns = spent * SAMPLE_DUTY;
        cw.hdr->heartbeat_mono_ns = cw_now();
    }
}

/* ---- starting the sampler, in the program -------------------------------- */

static unsigned reconcile_every = RECONCILE_EVERY;
static char self_path[PATH_MAX]; /* this library, absolute: what we exec */

/* Where this library is, resolved now: the program may chdir later. */
void cw_sampler_init(void)
{
    Dl_info info;
    if (!dladdr((void *)cw_sampler_init, &info) || !info.dli_fname)
        return;
    /* An absolute path stays valid through the program's chdir: no need
     * for realpath's lstat of every component in every process. */
    if (info.dli_fname[0] == '/')
        snprintf(self_path, sizeof self_path, "%s", info.dli_fname);
    else if (!realpath(info.dli_fname, self_path))
        self_path[0] = 0;
}

struct spawn {
    char *argv[7];
    char *envp[2];
    uint8_t *stack; /* for the second child */
    _Atomic pid_t sampler;
};

#define SPAWN_STACK 16384

/* The second child: becomes the sampler. Its fd table is a copy of the
 * program's: it lets go of all of it before exec, or the sampler would hold
 * the program's sockets open. */
static int become_sampler(void *arg)
{
    struct spawn *s = arg;
    if (syscall(SYS_close_range, 0L, (long)~0U, 0L) == 0)
        syscall(SYS_execve, self_path, s->argv, s->envp);
    syscall(SYS_exit, 127L);
    return 127;
}

/* The first child: starts the sampler and exits at once, so that the
 * sampler is nobody's child here (an exec'd child of the program would
 * signal it SIGCHLD and show in its wait()). Created without an exit signal
 * and reaped by cw_sampler_start, this one is never seen either. Both share
 * the program's memory and, blocked, its thread until they exec or exit:
 * raw system calls only. */
static int start_sampler(void *arg)
{
    struct spawn *s = arg;
    int (*real_clone)(int (*)(void *), void *, int, void *) = cw_resolve_clone();
    int pid =
        real_clone(become_sampler, s->stack + SPAWN_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, s);
    atomic_store(&s->sampler, pid > 0 ? pid : 0);
    syscall(SYS_exit, 0L);
    return 0;
}

void cw_sampler_start(void)
{
    int idle = 0;
    if (cw.sample_ms == 0 || !cw.hdr || !self_path[0] ||
        !atomic_compare_exchange_strong(&cw.sampler_state, &idle, 1))
        return;
    int saved = errno;
    /* Orphans are adopted by init or the nearest subreaper: when that is
     * this very process, the sampler would be its child after all. */
    int subreaper = 0;
    if (cw.pid == 1 || (prctl(PR_GET_CHILD_SUBREAPER, &subreaper) == 0 && subreaper)) {
        errno = saved;
        return;
    }
    char pid[16], ms[16], every[16], image[24];
    unsigned long long start_time, self_image;
    int masked;
    if (program_stat(cw.pid, &start_time, &self_image, &masked) != 0) {
        errno = saved;
        return;
    }
    snprintf(image, sizeof image, "%llu", self_image);
    snprintf(pid, sizeof pid, "%d", (int)cw.pid);
    snprintf(ms, sizeof ms, "%u", cw.sample_ms);
    snprintf(every, sizeof every, "%u", reconcile_every);
    static uint8_t stacks[2][SPAWN_STACK] __attribute__((aligned(16)));
    struct spawn s = {{(char *)"closewatch-sampler", pid, cw.path, ms, every, image, NULL},
                      {NULL, NULL},
                      stacks[1],
                      0};
    /* The sampler's libraries are found where ours were. */
    extern char **environ;
    for (char **e = environ; e && *e; e++)
        if (!strncmp(*e, "LD_LIBRARY_PATH=", 16))
            s.envp[0] = *e;
    sigset_t all, old;
    sigfillset(&all);
    /* No handler of the program may run in the children; the sampler keeps
     * them all blocked for good. */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    (void)REAL(sys); /* resolved before the children need it */
    /* glibc's clone, not our trampoline (vfork.c): these children run none
     * of our hooks. */
    int (*real_clone)(int (*)(void *), void *, int, void *) = cw_resolve_clone();
    int first = real_clone
                    ? real_clone(start_sampler, stacks[0] + SPAWN_STACK, CLONE_VM | CLONE_VFORK, &s)
                    : -1;
    if (first > 0)
        syscall(SYS_wait4, (long)first, NULL, (long)__WALL, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    atomic_store((_Atomic int32_t *)&cw.hdr->sampler_pid, atomic_load(&s.sampler));
    errno = saved;
}

void cw_sampler_start_for_raw_syscalls(void)
{
    reconcile_every = 1;
    cw_sampler_start();
}

void cw_sampler_after_fork(void)
{
    atomic_store(&cw.sampler_state, 0); /* the parent's sampler is not ours */
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
    int hwm = cw_fd_hwm();
    for (int fd = 0; fd < hwm && cw.hdr->sockets_open; fd++) {
        struct cw_fd_entry *e = cw_fd(fd);
        uint64_t sid = atomic_load((_Atomic uint64_t *)&e->sid);
        struct tcp_info ti;
        socklen_t len = sizeof ti;
        struct stat st;
        if ((sid & CW_SID_OPEN) && is_tcp(e) && syscall(SYS_fstat, fd, &st) == 0 &&
            (uint64_t)st.st_ino == e->inode &&
            syscall(SYS_getsockopt, fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0)
            set_state(fd, e, sid, ti.tcpi_state, now,
                      ti.tcpi_state == CW_TCP_CLOSE_WAIT ? fin_from_age(ti.tcpi_last_ack_recv) : 0);
    }
}

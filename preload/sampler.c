/*
 * sampler.c - what the program never tells us, asked of the kernel: the
 * loop of the sampler process.
 *
 * The sampler is a process of its own: libclosewatch.so executed as a
 * program (helper.c), started by the program with its first tracked TCP
 * socket (spawn.c), waking every CLOSEWATCH_SAMPLE_MS (0 = never started).
 * It maps the program's ring, asks the kernel which of the program's
 * sockets sit in CLOSE_WAIT (a socket whose EOF the program never reads is
 * caught this way) and marks them in the fd table; every few rounds it also
 * reconciles the table with /proc/PID/fd, finding sockets created behind
 * our back (untracked) and tracked ones closed behind our back (vanished).
 * It keeps all signals blocked, and leaves when the program exits (pidfd)
 * or execs.
 */
#include "cw.h"
#include "../common/sock_diag.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define SAMPLE_DUTY 50 /* sleep at least 50x as long as a sample took */

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

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
        open_tcp += (e->sid & CW_SID_OPEN) && cw_is_tcp(e->family, e->type);
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
        if (!(sid & CW_SID_OPEN) || !cw_is_tcp(e->family, e->type) || (e->flags & CW_FD_LISTENING))
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
                cw_on_tcp_state(fd, e, sid, CW_TCP_CLOSE_WAIT, now, fin_from_age(last_ack_ms));
            else if (e->tcp_state == CW_TCP_CLOSE_WAIT)
                cw_on_tcp_state(fd, e, sid, CW_TCP_UNKNOWN, now, 0);
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
        if (!(sid & CW_SID_OPEN) || !cw_is_tcp(e->family, e->type))
            continue;
        struct kstate key = {.inode = e->inode};
        const struct kstate *k = ks.n ? bsearch(&key, ks.v, ks.n, sizeof key, by_inode) : NULL;
        if (k)
            cw_on_tcp_state(fd, e, sid, k->state, now, k->fin_ns);
        else if (e->tcp_state == CW_TCP_CLOSE_WAIT)
            cw_on_tcp_state(fd, e, sid, CW_TCP_UNKNOWN, now, 0);
    }
    free(ks.v);
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
            cw_fd_socket_inode(fd) != m->idiag_inode)
            continue;
        /* Described before it is published: a reader never sees it bare. */
        struct cw_fd_entry seen = {0};
        addr_from_diag(&seen.local, m->idiag_family, m->id.idiag_src, m->id.idiag_sport);
        if (m->idiag_state != CW_TCP_LISTEN) {
            addr_from_diag(&seen.peer, m->idiag_family, m->id.idiag_dst, m->id.idiag_dport);
            seen.peer.scope_id = m->id.idiag_if;
            seen.flags = CW_FD_CONNECTED;
        } else {
            seen.flags = CW_FD_LISTENING;
        }
        cw_on_adopt(fd, CW_ORIGIN_UNTRACKED, m->idiag_family, SOCK_STREAM, m->idiag_inode, &seen);
    }
    return 0;
}

static void adopt_by_inode(void)
{
    if (by_inode_pending.n)
        cw_sock_diag_dump(CW_TCP_OWNED_STATES, adopt_from_diag, NULL);
    by_inode_pending.n = 0;
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
    uint64_t ino = cw_fd_socket_inode(fd);
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
    cw_for_each_fd(reconcile_one, NULL);
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
        if (cw_fd_gone(fd))
            cw_on_vanished(fd, sid);
    }
}

/* From /proc/PID/stat: the start time tells our program from a later one
 * with its pid; the image (proc_stat.h) tells an exec, which keeps the pid
 * and our ring. */
static int program_stat(pid_t pid, struct cw_pstat *st)
{
    return cw_pstat_read(pid, st) == 0 && st->image_known ? 0 : -1;
}

void cw_sampler_run(pid_t pid, unsigned reconcile_every, unsigned long long image)
{
    cw_proc_fds_of(pid);
    int exit_fd = (int)syscall(SYS_pidfd_open, (long)pid, 0L);
    struct cw_pstat st;
    /* Opened after a check that the pid is still our program's (the pidfd
     * then cannot be another's) and that it has not exec'd since it started
     * us (image: what it read of itself then; hidden from us if it is not
     * dumpable, and then only a traced exec is noticed, by exit_state). */
    if (program_stat(pid, &st) != 0 || st.starttime != cw.hdr->proc_starttime ||
        (!st.image_masked && st.image != image))
        return;
    uint64_t start_time = st.starttime;
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
        if (program_stat(pid, &st) != 0 || st.starttime != start_time ||
            (!st.image_masked && st.image != image) ||
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

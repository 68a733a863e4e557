/*
 * model.c - rebuilds socket lives from a ring (events for history, the fd
 * table for what is open now), joins the kernel's view for live processes,
 * and decides what is a finding.
 *
 * Times are CLOCK_MONOTONIC throughout: the recorder and a live analyzer
 * share the clock, and a dead process is judged up to its own end.
 */
#include "model.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "../common/hash.h"
#include "kernel.h"
#include "xalloc.h"

/* ---- names --------------------------------------------------------------- */

const char *cw_eof_name(enum cw_eof e)
{
    static const char *const names[] = {"none", "observed", "unread", "unknown"};
    return (unsigned)e <= CW_EOF_UNKNOWN ? names[e] : "unknown";
}

const char *cw_end_name(enum cw_end e)
{
    static const char *const names[] = {"running", "exited", "execed", "died", "no ring"};
    return (unsigned)e <= CW_END_NO_RING ? names[e] : "unknown";
}

/* ---- analysis lifetime ---------------------------------------------------- */

void cw_analysis_init(struct cw_analysis *a, const struct cw_options *opt)
{
    memset(a, 0, sizeof *a);
    a->opt = *opt;
    a->now_mono_ns = cw_mono_now();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    a->now_realtime_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void cw_analysis_free(struct cw_analysis *a)
{
    for (int i = 0; i < a->nprocs; i++) {
        cw_ring_close(&a->procs[i]->ring);
        free(a->procs[i]->modules);
        free(a->procs[i]);
    }
    free(a->procs);
    free(a->findings);
    memset(a, 0, sizeof *a);
}

static struct cw_process *add_process(struct cw_analysis *a)
{
    a->procs = cw_xrealloc(a->procs, (size_t)(a->nprocs + 1) * sizeof *a->procs);
    struct cw_process *p = cw_xcalloc(1, sizeof *p);
    a->procs[a->nprocs++] = p;
    return p;
}

static struct cw_finding *add_finding(struct cw_analysis *a, enum cw_kind kind,
                                      struct cw_process *p)
{
    if (a->nfindings == a->cap) {
        int cap = a->cap ? a->cap * 2 : 64;
        a->findings = cw_xrealloc(a->findings, (size_t)cap * sizeof *a->findings);
        a->cap = cap;
    }
    struct cw_finding *f = &a->findings[a->nfindings++];
    memset(f, 0, sizeof *f);
    f->kind = kind;
    f->proc = p;
    f->open_proc = p;
    f->fd = -1;
    f->listener.fd = -1;
    return f;
}

/* ---- socket reconstruction ------------------------------------------------ */

/* One per socket id seen in a ring: a million-event ring holds hundreds of
 * thousands, so this stays small. Addresses and timelines are fetched only
 * for the few sockets that become findings. */
struct sock {
    uint64_t sid, inode;
    uint64_t open_ns, eof_ns, close_ns, close_wait_ns, shut_wr_ns;
    int32_t fd;
    uint32_t flags, eof_count, open_stack, eof_stack, close_stack, recv_q, request_stack;
    uint16_t family, type;
    uint8_t origin, tcp_state, eof_how, closed, close_how;
    uint8_t closed_at_exit; /* by the process's teardown (CW_EVF_AT_EXIT) */
    int32_t listener_fd1;   /* accepted: the listening fd + 1; 0 unknown */
};

/* Open-addressing map sid -> struct sock. */
struct sockmap {
    struct sock *v;
    size_t cap, n;
};

static struct sock *sock_get(struct sockmap *m, uint64_t sid)
{
    if (m->n * 4 >= m->cap * 3) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        struct sock *v = cw_xcalloc(cap, sizeof *v);
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->v[i].sid)
                continue;
            size_t j = cw_hash64(m->v[i].sid) & (cap - 1);
            while (v[j].sid)
                j = (j + 1) & (cap - 1);
            v[j] = m->v[i];
        }
        free(m->v);
        m->v = v;
        m->cap = cap;
    }
    size_t j = cw_hash64(sid) & (m->cap - 1);
    while (m->v[j].sid && m->v[j].sid != sid)
        j = (j + 1) & (m->cap - 1);
    if (!m->v[j].sid) {
        memset(&m->v[j], 0, sizeof m->v[j]);
        m->v[j].sid = sid;
        m->v[j].fd = -1;
        m->n++;
    }
    return &m->v[j];
}

static void apply_event(struct cw_analysis *a, struct cw_process *p, struct sockmap *m,
                        const struct cw_event *ev)
{
    if (ev->type == CW_EV_ERROR) {
        struct cw_finding *f = add_finding(a, CW_K_EMFILE, p);
        f->err = (int)ev->arg0;
        f->sockets_open = (uint32_t)ev->arg2;
        f->open_stack = ev->stack;
        f->open_ns = ev->time_ns;
        return;
    }
    if (ev->type == CW_EV_DOUBLE_CLOSE) {
        struct cw_finding *f = add_finding(a, CW_K_DOUBLE_CLOSE, p);
        f->fd = ev->fd;
        f->sid = ev->sid;
        f->err = EBADF;
        f->close_stack = ev->stack;
        f->close_ns = ev->time_ns;
        /* fall through to the socket's own timeline below */
    }
    if (!ev->sid)
        return;
    struct sock *s = sock_get(m, ev->sid);
    switch (ev->type) {
    case CW_EV_OPEN:
        s->fd = ev->fd;
        s->origin = cw_open_arg_origin(ev->arg0);
        s->family = cw_open_arg_family(ev->arg0);
        s->type = cw_open_arg_type(ev->arg0);
        s->inode = (uint64_t)ev->arg2;
        s->open_ns = ev->time_ns;
        s->open_stack = ev->stack;
        if (s->origin == CW_ORIGIN_ACCEPT && ev->arg1 >= 0 && ev->arg1 < INT32_MAX)
            s->listener_fd1 = (int32_t)ev->arg1 + 1;
        break;
    case CW_EV_EOF:
        if (!s->eof_ns) {
            s->eof_ns = ev->time_ns;
            s->eof_stack = ev->stack;
            s->eof_how = (int)ev->arg0;
        }
        break;
    case CW_EV_SHUTDOWN:
        if (ev->arg1 == 0 && (ev->arg0 == SHUT_WR || ev->arg0 == SHUT_RDWR) && !s->shut_wr_ns)
            s->shut_wr_ns = ev->time_ns;
        break;
    case CW_EV_CLOSE:
        /* A real close beats a "vanished" guess made by a racing opener. */
        if (!s->closed || (s->close_how == CW_CLOSE_VANISHED && ev->arg0 != CW_CLOSE_VANISHED)) {
            s->closed = 1;
            s->close_ns = ev->time_ns;
            s->close_how = (int)ev->arg0;
            s->close_stack = ev->stack;
            s->closed_at_exit = (ev->flags & CW_EVF_AT_EXIT) != 0;
        }
        if ((uint64_t)ev->arg1 > s->eof_count)
            s->eof_count = (uint32_t)ev->arg1;
        break;
    case CW_EV_STATE:
        s->tcp_state = (int)ev->arg0;
        if (ev->arg0 == CW_TCP_CLOSE_WAIT && !s->close_wait_ns)
            s->close_wait_ns = ev->time_ns;
        break;
    default: break;
    }
}

/* The fd table is the truth about sockets open now, and about the last
 * socket of each fd number even when its events were overwritten. */
static void apply_fd_table(struct cw_process *p, struct sockmap *m)
{
    const struct cw_ring *r = &p->ring;
    for (uint32_t fd = 0; fd < r->hdr.fd_cap; fd++) {
        struct cw_fd_entry e;
        if (!cw_ring_fd(r, fd, &e) || !e.sid)
            continue;
        struct sock *s = sock_get(m, e.sid & ~CW_SID_OPEN);
        s->fd = (int)fd;
        s->origin = e.origin;
        s->family = e.family;
        s->type = e.type;
        s->inode = e.inode;
        s->flags = e.flags;
        if (!s->open_ns)
            s->open_ns = e.open_ns;
        /* ...and a stack given language frames after the open (Node's,
         * preload/jsframes.c) is in the table, not in the open event. */
        if (!s->open_stack ||
            (e.open_stack != s->open_stack && cw_ring_stack_lang(r, e.open_stack) &&
             !cw_ring_stack_lang(r, s->open_stack)))
            s->open_stack = e.open_stack;
        if (e.request_stack)
            s->request_stack = e.request_stack;
        if (e.eof_ns && !s->eof_ns) {
            s->eof_ns = e.eof_ns;
            s->eof_stack = e.eof_stack;
            s->eof_how = (e.flags & CW_FD_EOF_POLLED) ? CW_EOF_RDHUP : CW_EOF_READ;
        }
        if (e.eof_count > s->eof_count)
            s->eof_count = e.eof_count;
        if (e.tcp_state)
            s->tcp_state = e.tcp_state;
        if (e.close_wait_ns && (!s->close_wait_ns || e.close_wait_ns < s->close_wait_ns))
            s->close_wait_ns = e.close_wait_ns;
        if ((e.flags & CW_FD_SHUT_WR) && !s->shut_wr_ns)
            s->shut_wr_ns = e.state_ns ? e.state_ns : e.open_ns;
        if (!(e.sid & CW_SID_OPEN) && !s->closed && e.close_ns) {
            s->closed = 1;
            s->close_ns = e.close_ns;
            s->close_stack = e.close_stack;
            s->close_how = CW_CLOSE_CLOSE;
            s->closed_at_exit = (e.flags & CW_FD_CLOSED_AT_EXIT) != 0;
        }
        if (e.sid & CW_SID_OPEN)
            p->sockets_open++;
    }
}

static int is_tcp(const struct sock *s)
{
    return (s->family == AF_INET || s->family == AF_INET6) && s->type == SOCK_STREAM;
}

static double secs(uint64_t from, uint64_t to)
{
    return to > from ? (double)(to - from) / 1e9 : 0.0;
}

static void fill_finding(struct cw_finding *f, const struct sock *s, uint64_t end)
{
    f->fd = s->fd;
    f->sid = s->sid;
    f->inode = s->inode;
    f->family = s->family;
    f->type = s->type;
    f->origin = s->origin;
    f->eof_how = s->eof_how;
    f->eof_count = s->eof_count;
    f->closed = s->closed;
    f->close_how = s->close_how;
    f->closed_at_exit = s->closed && s->closed_at_exit;
    f->tcp_state = s->tcp_state;
    f->recv_q = s->recv_q;
    f->open_ns = s->open_ns;
    f->eof_ns = s->eof_ns;
    f->close_ns = s->close_ns;
    f->close_wait_ns = s->close_wait_ns;
    f->open_stack = s->open_stack;
    f->eof_stack = s->eof_stack;
    f->close_stack = s->close_stack;
    f->request_stack = s->request_stack;
    f->age_seconds = secs(s->open_ns, s->closed ? s->close_ns : end);
    f->eof = s->eof_ns ? CW_EOF_OBSERVED : (s->close_wait_ns ? CW_EOF_UNREAD : CW_EOF_NONE);
    /* A socket created behind libc's back is read behind it too (Go's
     * runtime): no EOF seen proves nothing, as in the live kernel view. */
    if (f->eof == CW_EOF_UNREAD && s->origin == CW_ORIGIN_UNTRACKED)
        f->eof = CW_EOF_UNKNOWN;
}

/* Whether a socket in CLOSE_WAIT since fin is still within the grace at
 * end (then counted as such). --grace=0 flags every socket in CLOSE_WAIT,
 * even one whose FIN is the very last thing known (fin == end). */
static int within_grace(struct cw_analysis *a, uint64_t fin, uint64_t end)
{
    if (end >= fin && end - fin >= (uint64_t)(a->opt.grace_s * 1e9))
        return 0;
    a->young_close_wait++;
    return 1;
}

/* When the peer's FIN arrived, as far as we know: the first EOF the program
 * saw, or the first sample that found the socket in CLOSE_WAIT. */
static void classify(struct cw_analysis *a, struct cw_process *p, const struct sock *s)
{
    uint64_t end = p->end_mono_ns;
    uint64_t grace_ns = (uint64_t)(a->opt.grace_s * 1e9);

    if (s->eof_count >= a->opt.spin_threshold && s->type == SOCK_STREAM) {
        fill_finding(add_finding(a, CW_K_EOF_SPIN, p), s, end);
    }
    if (!is_tcp(s))
        return;

    uint64_t fin = cw_peer_fin_ns(s->eof_ns, s->close_wait_ns);
    /* We sent our FIN too (shutdown): the connection left CLOSE_WAIT. A
     * known kernel state other than CLOSE_WAIT settles it as well. */
    int half_closed_by_us = s->shut_wr_ns != 0;
    int kernel_disagrees = s->tcp_state && s->tcp_state != CW_TCP_CLOSE_WAIT;
    enum cw_kind kind;
    if (s->closed) {
        /* Closing within a few ms of the EOF is prompt, even with --grace=0. */
        uint64_t late_ns = grace_ns > CW_PROMPT_CLOSE_NS ? grace_ns : CW_PROMPT_CLOSE_NS;
        if (!fin || half_closed_by_us || s->close_ns <= fin || s->close_ns - fin <= late_ns)
            return;
        /* Closed by the process's teardown only: the program never did. */
        kind = s->closed_at_exit ? CW_K_CLOSE_WAIT : CW_K_LATE_CLOSE;
    } else if (fin && !half_closed_by_us && !kernel_disagrees) {
        if (within_grace(a, fin, end))
            return;
        kind = s->origin == CW_ORIGIN_UNTRACKED ? CW_K_UNTRACKED : CW_K_CLOSE_WAIT;
    } else if (s->origin == CW_ORIGIN_UNTRACKED && s->tcp_state == CW_TCP_CLOSE_WAIT) {
        /* Found already in CLOSE_WAIT, undated: the FIN came before the
         * sampler adopted it, so the adoption dates it young. A socket a
         * hook was about to record (accept() had returned) is no leak. */
        if (within_grace(a, s->open_ns ? s->open_ns : end, end))
            return;
        kind = CW_K_UNTRACKED;
    } else {
        if (!a->opt.include_info || p->end == CW_END_RUNNING || (s->flags & CW_FD_LISTENING) ||
            s->tcp_state == CW_TCP_LISTEN)
            return;
        kind = CW_K_OPEN_AT_EXIT;
    }
    struct cw_finding *f = add_finding(a, kind, p);
    fill_finding(f, s, end);
    uint64_t stop = s->closed ? s->close_ns : end;
    f->seconds_in_close_wait = fin ? secs(fin, stop) : 0.0;
}

/* ---- processes ------------------------------------------------------------ */

static void copy_identity(struct cw_process *p)
{
    const struct cw_header *h = &p->ring.hdr;
    p->pid = h->pid;
    p->ppid = h->ppid;
    memcpy(p->exe, h->exe, sizeof p->exe);
    size_t n = 0;
    for (uint32_t i = 0; i < h->argv_len && n + 1 < sizeof p->cmdline; i++)
        p->cmdline[n++] = h->argv[i] ? h->argv[i] : ' ';
    while (n && p->cmdline[n - 1] == ' ')
        n--;
    p->cmdline[n] = 0;
    p->start_realtime_ns = h->start_realtime_ns;
    p->start_mono_ns = h->start_mono_ns;

    uint32_t nm = cw_ring_module_count(&p->ring);
    p->modules = calloc(nm ? nm : 1, sizeof *p->modules);
    for (uint32_t i = 0; p->modules && i < nm; i++)
        if (cw_ring_module(&p->ring, i, &p->modules[p->nmodules]))
            p->nmodules++;
}

/*
 * A killed process's sampler stamps the moment it saw the death (its
 * pidfd woke) into the heartbeat and leaves. Read right after the kill, the
 * ring may not have that stamp yet, and the process would be judged up to
 * the sampler's previous round, up to a period early: a socket past the
 * grace when the live report looked would be within it post-mortem. So wait
 * for that sampler, if it is still there, to finish (at most a second).
 */
#define SAMPLER_STAMP_WAIT_MS 1000

static void await_sampler(const struct cw_ring *r)
{
    pid_t s = r->hdr.sampler_pid;
    char path[64], cmd[64] = "";
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)s);
    FILE *f = s > 0 ? fopen(path, "r") : NULL;
    size_t n = f ? fread(cmd, 1, sizeof cmd - 1, f) : 0;
    if (f)
        fclose(f);
    cmd[n] = 0;
    if (strcmp(cmd, "closewatch-sampler") != 0 ||
        strtol(cmd + strlen(cmd) + 1, NULL, 10) != r->hdr.pid)
        return; /* gone already, or that pid is someone else's now */
    int fd = (int)syscall(SYS_pidfd_open, (long)s, 0L);
    if (fd < 0)
        return;
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    poll(&pf, 1, SAMPLER_STAMP_WAIT_MS);
    close(fd);
}

/* How the recorded life ended, from the header and whether the pid lives. */
static void decide_end(struct cw_analysis *a, struct cw_process *p, uint64_t last_event_ns)
{
    struct cw_ring_live live;
    cw_ring_live(&p->ring, &live);
    uint32_t state = live.exit_state;
    if (state == CW_EXITED || state == CW_EXECED) {
        p->end = state == CW_EXITED ? CW_END_EXITED : CW_END_EXECED;
        p->end_mono_ns = live.exit_mono_ns;
        return;
    }
    uint64_t start = 0;
    if (cw_pid_alive(p->pid, &start) && start == p->ring.hdr.proc_starttime) {
        p->end = CW_END_RUNNING;
        p->end_mono_ns = a->now_mono_ns;
        return;
    }
    /* Killed or crashed: judge up to the last sign of life we have. */
    if (state == CW_RUNNING) {
        await_sampler(&p->ring);
        cw_ring_live(&p->ring, &live);
    }
    p->end = CW_END_DIED;
    p->end_mono_ns =
        live.heartbeat_mono_ns > last_event_ns ? live.heartbeat_mono_ns : last_event_ns;
}

/* When the peer's FIN came: the earliest of what the recorder saw and what
 * the kernel says (its date is an upper bound), else the moment we looked. */
static uint64_t earliest_fin(uint64_t recorded_ns, const struct cw_ksock *k, uint64_t now)
{
    uint64_t fin = recorded_ns;
    if (k->fin_mono_ns && (!fin || k->fin_mono_ns < fin))
        fin = k->fin_mono_ns;
    return fin ? fin : now;
}

/* A CLOSE_WAIT socket only the kernel knows (no ring, or never seen by the
 * library): a finding once the kernel's date puts it past the grace. */
static void add_kernel_only(struct cw_analysis *a, struct cw_process *p, const struct cw_ksock *k,
                            enum cw_kind kind, uint64_t end)
{
    uint64_t fin = earliest_fin(0, k, end);
    if (within_grace(a, fin, end))
        return;
    struct cw_finding *f = add_finding(a, kind, p);
    f->fd = k->fd;
    f->inode = k->inode;
    f->family = k->local.family;
    f->type = SOCK_STREAM;
    f->origin = CW_ORIGIN_UNTRACKED;
    f->local = k->local;
    f->peer = k->peer;
    f->tcp_state = k->state;
    f->recv_q = k->recv_q;
    f->eof = CW_EOF_UNKNOWN;
    f->close_wait_ns = fin;
    f->seconds_in_close_wait = secs(fin, end);
}

/* For a live process, the kernel knows better than the last sample. kv was
 * taken after the ring was read, and the ring read once more after that, so
 * every socket the kernel shows was opened before our last look: one the
 * ring does not know was really made behind libc's back. */
static void join_kernel(struct cw_analysis *a, struct cw_process *p, struct sockmap *m,
                        const struct cw_kview *kv)
{
    /* Kernel sockets some tracked socket accounts for. */
    uint8_t *known = calloc((size_t)kv->n + 1, 1);
    if (!known)
        return;
    for (size_t i = 0; i < m->cap; i++) {
        struct sock *s = &m->v[i];
        if (!s->sid || !s->inode)
            continue;
        const struct cw_ksock *k = cw_kview_find(kv, s->inode);
        if (!k)
            continue;
        known[k - kv->socks] = 1;
        if (s->closed || !k->is_tcp)
            continue;
        s->tcp_state = k->state;
        s->recv_q = k->recv_q;
        if (k->state == CW_TCP_CLOSE_WAIT)
            s->close_wait_ns = cw_fin_since_open(
                earliest_fin(cw_peer_fin_ns(s->eof_ns, s->close_wait_ns), k, p->end_mono_ns),
                s->open_ns, s->origin == CW_ORIGIN_UNTRACKED);
    }
    /* Sockets the library never saw: CLOSE_WAIT ones are findings. */
    for (int i = 0; i < kv->n; i++) {
        const struct cw_ksock *k = &kv->socks[i];
        if (k->is_tcp && k->state == CW_TCP_CLOSE_WAIT && !known[i])
            add_kernel_only(a, p, k, p->has_ring ? CW_K_UNTRACKED : CW_K_CLOSE_WAIT,
                            kv->taken_mono_ns < p->end_mono_ns ? kv->taken_mono_ns
                                                               : p->end_mono_ns);
    }
    free(known);
}

struct sid_index {
    uint64_t sid;
    int finding;
};

static int by_sid(const void *x, const void *y)
{
    uint64_t a = ((const struct sid_index *)x)->sid, b = ((const struct sid_index *)y)->sid;
    return a < b ? -1 : a > b;
}

static void timeline_add(struct cw_finding *f, const struct cw_event *ev)
{
    /* Keep the first entries and always the last one: a life's shape. */
    int i = f->ntimeline < CW_TIMELINE_MAX ? f->ntimeline++ : CW_TIMELINE_MAX - 1;
    f->timeline[i] = (struct cw_timeline_entry){ev->time_ns, ev->type, ev->arg0, ev->stack};
}

/* Addresses and timelines for the findings [first, a->nfindings) of p: a
 * second look at the ring, for the few sockets that need them. */
static void complete_findings(struct cw_analysis *a, struct cw_process *p, int first,
                              const struct cw_kview *kv)
{
    int n = a->nfindings - first;
    if (n <= 0)
        return;
    struct sid_index *idx = malloc((size_t)n * sizeof *idx);
    if (!idx)
        return;
    int m = 0;
    for (int i = first; i < a->nfindings; i++) {
        struct cw_finding *f = &a->findings[i];
        struct cw_fd_entry e;
        if (f->fd >= 0 && cw_ring_fd(&p->ring, (uint32_t)f->fd, &e) &&
            (e.sid & ~CW_SID_OPEN) == f->sid) {
            f->local = e.local;
            f->peer = e.peer;
        }
        const struct cw_ksock *k = kv && f->inode ? cw_kview_find(kv, f->inode) : NULL;
        if (k && k->is_tcp) {
            if (!f->local.family)
                f->local = k->local;
            if (!f->peer.family)
                f->peer = k->peer;
        }
        if (f->sid)
            idx[m++] = (struct sid_index){f->sid, i};
    }
    qsort(idx, (size_t)m, sizeof *idx, by_sid);
    struct cw_ring_iter it;
    struct cw_event ev;
    cw_ring_iter_begin(&p->ring, &it);
    while (m && cw_ring_iter_next(&p->ring, &it, &ev)) {
        struct sid_index key = {ev.sid, 0};
        struct sid_index *hit = bsearch(&key, idx, (size_t)m, sizeof key, by_sid);
        if (!hit)
            continue;
        /* Several findings (eof_spin and close_wait) may share a socket. */
        while (hit > idx && hit[-1].sid == ev.sid)
            hit--;
        for (; hit < idx + m && hit->sid == ev.sid; hit++)
            timeline_add(&a->findings[hit->finding], &ev);
    }
    free(idx);
}

/* Everything the ring says, from event `it` onwards, into m. */
static uint64_t read_ring(struct cw_analysis *a, struct cw_process *p, struct sockmap *m,
                          struct cw_ring_iter *it, uint64_t last)
{
    struct cw_event ev;
    while (cw_ring_iter_next(&p->ring, it, &ev)) {
        apply_event(a, p, m, &ev);
        if (ev.time_ns > last)
            last = ev.time_ns;
    }
    p->sockets_open = 0;
    apply_fd_table(p, m);
    return last;
}

static struct sock *sock_find(const struct sockmap *m, uint64_t sid)
{
    if (!m->cap)
        return NULL;
    for (size_t j = cw_hash64(sid) & (m->cap - 1); m->v[j].sid; j = (j + 1) & (m->cap - 1))
        if (m->v[j].sid == sid)
            return &m->v[j];
    return NULL;
}

/* Each accepted finding's listener: the socket that held the listening fd
 * when the connection was accepted (the latest opened before it and not
 * closed before it), if the ring still knows it. One pass over the map
 * gathers the sockets that ever had one of those fd numbers: a big ring
 * holds hundreds of thousands of sockets, a server a listener or two. */
static void find_listeners(struct cw_analysis *a, struct cw_process *p, const struct sockmap *m,
                           int first)
{
    int nf = a->nfindings - first, nfds = 0;
    if (nf <= 0)
        return;
    const struct sock **accepted = cw_xcalloc((size_t)nf, sizeof *accepted);
    int fds[64];
    for (int i = 0; i < nf; i++) {
        const struct cw_finding *f = &a->findings[first + i];
        const struct sock *s = f->sid ? sock_find(m, f->sid) : NULL;
        if (!s || !s->listener_fd1)
            continue;
        int k = 0;
        while (k < nfds && fds[k] != s->listener_fd1 - 1)
            k++;
        if (k == nfds && nfds == (int)(sizeof fds / sizeof *fds))
            continue; /* more listeners than any server has: left unknown */
        if (k == nfds)
            fds[nfds++] = s->listener_fd1 - 1;
        accepted[i] = s;
    }
    const struct sock **cand = NULL;
    size_t ncand = 0, cap = 0;
    for (size_t j = 0; nfds && j < m->cap; j++) {
        const struct sock *l = &m->v[j];
        int k = 0;
        while (l->sid && k < nfds && fds[k] != l->fd)
            k++;
        if (!l->sid || k == nfds)
            continue;
        if (ncand == cap) {
            cap = cap ? 2 * cap : 16;
            cand = cw_xrealloc(cand, cap * sizeof *cand);
        }
        cand[ncand++] = l;
    }
    for (int i = 0; i < nf; i++) {
        const struct sock *s = accepted[i], *best = NULL;
        for (size_t j = 0; s && j < ncand; j++) {
            const struct sock *l = cand[j];
            if (l == s || l->fd != s->listener_fd1 - 1 || l->open_ns > s->open_ns ||
                (l->closed && l->close_ns < s->open_ns) || (best && best->open_ns > l->open_ns))
                continue;
            best = l;
        }
        if (!best)
            continue;
        struct cw_finding *f = &a->findings[first + i];
        f->listener.fd = best->fd;
        f->listener.origin = best->origin;
        f->listener.inode = best->inode;
        f->listener.open_stack = best->open_stack;
        f->listener.open_proc = p;
    }
    free(cand);
    free(accepted);
}

/* The live process's sockets by TCP state, as `watch` shows them. */
static void count_kernel_states(struct cw_process *p, const struct cw_kview *kv)
{
    p->kernel.valid = 1;
    p->kernel.sockets = kv->n;
    cw_proc_fd_usage(kv->pid, &p->kernel.fds_open, &p->kernel.fds_limit);
    for (int i = 0; i < kv->n; i++) {
        const struct cw_ksock *k = &kv->socks[i];
        if (k->is_tcp && k->state > 0 &&
            k->state < (int)(sizeof p->kernel.tcp_states / sizeof(int)))
            p->kernel.tcp_states[k->state]++;
        else
            p->kernel.non_tcp++;
    }
}

static int analyze_open_ring(struct cw_analysis *a, struct cw_process *p)
{
    int first_finding = a->nfindings;
    copy_identity(p);
    struct sockmap m = {0};
    struct cw_ring_iter it;
    cw_ring_iter_begin(&p->ring, &it);
    uint64_t last = read_ring(a, p, &m, &it, p->ring.hdr.start_mono_ns);
    decide_end(a, p, last);

    /* A live process: the ring first, then the kernel, then the ring again.
     * The kernel's view is newer than the first read, so a socket opened
     * and closed in between shows up in the second; a socket the kernel
     * shows is in the ring by the second read, unless no hook saw it. */
    struct cw_kview kv = {0};
    int have_kv = 0;
    if (p->end == CW_END_RUNNING) {
        char err[256];
        have_kv = cw_kernel_view(p->pid, &kv, err, sizeof err) == 0;
        p->end_mono_ns = cw_mono_now(); /* judged up to our last look */
        cw_ring_iter_extend(&p->ring, &it);
        read_ring(a, p, &m, &it, last);
        if (have_kv) {
            join_kernel(a, p, &m, &kv);
            count_kernel_states(p, &kv);
        }
    }
    for (int i = 0; p->end == CW_END_DIED && i < a->nlast_views; i++) {
        const struct cw_kview *v = a->last_views[i];
        if (v->pid != p->pid || v->proc_starttime != p->ring.hdr.proc_starttime)
            continue;
        /* Alive when the view was taken: judged up to then at least. */
        if (v->taken_mono_ns > p->end_mono_ns)
            p->end_mono_ns = v->taken_mono_ns;
        join_kernel(a, p, &m, v);
    }
    struct cw_ring_live live;
    cw_ring_live(&p->ring, &live);
    p->events = it.end;
    p->overwritten = it.overwritten;
    p->torn = it.torn;
    p->dropped = live.events_dropped;
    p->stacks_dropped = live.stacks_dropped;
    p->fds_beyond_table = live.fds_beyond_table;

    for (size_t i = 0; i < m.cap; i++) {
        struct sock *s = &m.v[i];
        if (!s->sid)
            continue;
        p->sockets_seen++;
        /* An exec ended this image: what it still held was closed by the
         * exec (close-on-exec) or lives on in the next image, judged there. */
        if (p->end == CW_END_EXECED && !s->closed) {
            s->closed = 1;
            s->close_ns = p->end_mono_ns;
            s->close_how = 0;
        }
        classify(a, p, s);
    }
    find_listeners(a, p, &m, first_finding);
    free(m.v);
    complete_findings(a, p, first_finding, have_kv ? &kv : NULL);
    cw_kview_free(&kv);
    return 0;
}

int cw_analyze_ring(struct cw_analysis *a, const char *path, char *err, size_t errlen)
{
    struct cw_process *p = add_process(a);
    int rc = cw_ring_open(&p->ring, path, err, errlen);
    if (rc != CW_RING_OK) {
        free(p);
        a->nprocs--;
        return rc;
    }
    p->has_ring = 1;
    snprintf(p->ring_path, sizeof p->ring_path, "%s", path);
    return analyze_open_ring(a, p);
}

/* ---- ring discovery ------------------------------------------------------- */

static int cmp_path(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

/* Appends dir/name to *paths; returns 0 when out of memory. */
static int add_path(char ***paths, int *n, int *cap, const char *dir, const char *name)
{
    if (*n == *cap) {
        int c = *cap ? *cap * 2 : 16;
        char **v = realloc(*paths, (size_t)c * sizeof *v);
        if (!v)
            return 0;
        *paths = v;
        *cap = c;
    }
    size_t sz = strlen(dir) + strlen(name) + 2;
    char *p = malloc(sz);
    if (!p)
        return 0;
    snprintf(p, sz, "%s/%s", dir, name);
    (*paths)[(*n)++] = p;
    return 1;
}

static void scan_dir(const char *dir, int pid, int depth, char ***paths, int *n, int *cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        /* `closewatch run` keeps each run's rings in a directory of its own. */
        if (depth == 0 && !strncmp(e->d_name, "closewatch-run-", 15) && e->d_type == DT_DIR) {
            char sub[4096];
            snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name);
            scan_dir(sub, pid, 1, paths, n, cap);
            continue;
        }
        int owner = cw_ring_file_pid(e->d_name);
        if (owner < 0 || (pid && owner != pid))
            continue;
        if (!add_path(paths, n, cap, dir, e->d_name))
            break;
    }
    closedir(d);
}

int cw_find_rings(const char *dir, int pid, char ***paths)
{
    *paths = NULL;
    int n = 0, cap = 0;
    scan_dir(dir, pid, 0, paths, &n, &cap);
    if (n)
        qsort(*paths, (size_t)n, sizeof **paths, cmp_path);
    return n;
}

void cw_free_paths(char **paths, int n)
{
    for (int i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
}

/* The name of the ring a process maps at `mapped` (the path /proc/PID/maps
 * gives, inode ino) in out: 1 if it is a ring file. The preload builds a
 * ring unnamed (O_TMPFILE) and links it once complete, so maps shows the
 * name it had when mapped, "DIR/#INODE (deleted)": the ring is the entry of
 * DIR with that inode. */
static int mapped_ring_name(const char *mapped, unsigned long ino, char *out, size_t outlen)
{
    static const char deleted[] = " (deleted)";
    size_t len = strlen(mapped), dlen = sizeof deleted - 1;
    const char *slash = strrchr(mapped, '/');
    int dirlen = (int)(slash - mapped);
    if (len > dlen && !strcmp(mapped + len - dlen, deleted) && slash[1] == '#') {
        snprintf(out, outlen, "%.*s", dirlen ? dirlen : 1, mapped);
        DIR *d = opendir(out);
        if (!d)
            return 0;
        int found = 0;
        for (struct dirent *de; !found && (de = readdir(d));)
            if (de->d_ino == ino && cw_ring_file_pid(de->d_name) >= 0) {
                int n = snprintf(out, outlen, "%.*s/%s", dirlen, mapped, de->d_name);
                found = n > 0 && (size_t)n < outlen;
            }
        closedir(d);
        return found;
    }
    int n = snprintf(out, outlen, "%s", mapped);
    return n > 0 && (size_t)n < outlen && cw_ring_file_pid(slash + 1) >= 0;
}

/* The rings pid has mapped, wherever its CLOSEWATCH_DIR pointed: added to
 * paths[0..n) unless already there. Returns the new count. */
static int add_mapped_rings(int pid, char ***paths, int n)
{
    char maps[64], line[4096 + 128], path[4096 + 128];
    snprintf(maps, sizeof maps, "/proc/%d/maps", pid);
    FILE *f = fopen(maps, "re");
    if (!f)
        return n;
    int cap = n;
    while (fgets(line, sizeof line, f)) {
        char *mapped = strchr(line, '/');
        if (!mapped)
            continue;
        mapped[strcspn(mapped, "\n")] = 0;
        unsigned long ino = 0;
        if (sscanf(line, "%*s %*s %*s %*s %lu", &ino) != 1)
            continue;
        if (!mapped_ring_name(mapped, ino, path, sizeof path))
            continue; /* not a ring, or one unlinked since */
        /* The same file under another name (a trailing slash, a link)
         * must not be analyzed twice. */
        struct stat st, other;
        if (stat(path, &st) != 0)
            continue;
        int known = 0;
        for (int i = 0; i < n && !known; i++)
            known = !stat((*paths)[i], &other) && other.st_dev == st.st_dev &&
                    other.st_ino == st.st_ino;
        if (known)
            continue;
        char *slash = strrchr(path, '/');
        *slash = 0;
        if (!add_path(paths, &n, &cap, *path ? path : "/", slash + 1)) {
            *slash = '/';
            break;
        }
    }
    fclose(f);
    return n;
}

int cw_analyze_pid(struct cw_analysis *a, int pid, const char *dir, char *err, size_t errlen)
{
    uint64_t start;
    if (!cw_pid_alive(pid, &start)) {
        snprintf(err, errlen,
                 "pid %d: no such process (it may have exited; pass its ring file "
                 "from %s instead)",
                 pid, dir);
        return -1;
    }
    /* Fails early, with the reason, for a process we may not look at. */
    struct cw_kview kv;
    if (cw_kernel_view(pid, &kv, err, errlen) != 0)
        return -1;
    cw_kview_free(&kv);

    char **paths;
    int n = cw_find_rings(dir, pid, &paths), used = 0;
    n = add_mapped_rings(pid, &paths, n);
    for (int i = 0; i < n; i++) {
        struct cw_process *p = add_process(a);
        char rerr[512];
        if (cw_ring_open(&p->ring, paths[i], rerr, sizeof rerr) != CW_RING_OK ||
            p->ring.hdr.proc_starttime != start) {
            /* A stale ring of an earlier process with the same pid. */
            cw_ring_close(&p->ring);
            free(p);
            a->nprocs--;
            continue;
        }
        p->has_ring = 1;
        snprintf(p->ring_path, sizeof p->ring_path, "%s", paths[i]);
        analyze_open_ring(a, p);
        used++;
    }
    cw_free_paths(paths, n);
    if (used)
        return 0;

    /* No ring: the kernel's view is all there is, without stacks. */
    if (cw_kernel_view(pid, &kv, err, errlen) != 0)
        return -1;
    char exe[CW_EXE_MAX];
    cw_proc_exe(pid, exe, sizeof exe);
    cw_analyze_kernel_view(a, &kv, exe, kv.taken_mono_ns);
    cw_kview_free(&kv);
    return 0;
}

void cw_analyze_kernel_view(struct cw_analysis *a, const struct cw_kview *kv, const char *exe,
                            uint64_t end_mono_ns)
{
    struct cw_process *p = add_process(a);
    p->pid = kv->pid;
    p->end = CW_END_NO_RING;
    p->end_mono_ns = end_mono_ns;
    snprintf(p->exe, sizeof p->exe, "%s", exe);
    struct sockmap empty = {0};
    join_kernel(a, p, &empty, kv);
    count_kernel_states(p, kv);
    p->sockets_seen = kv->n;
}

/* ---- inherited sockets ----------------------------------------------------- */

/* The process that handed q its inherited sockets: its parent (fork) or
 * its previous image (exec, same pid). */
static int is_donor(const struct cw_process *d, const struct cw_process *q)
{
    if (!d->has_ring || d == q)
        return 0;
    if (d->pid == q->ppid)
        return 1;
    return d->pid == q->pid && d->ring.hdr.image_seq + 1 == q->ring.hdr.image_seq;
}

/* Where a socket inherited by proc (as *origin, *open_stack, *open_proc,
 * with its inode and fd number) was really opened: follows the chain of
 * donors, a socket may have been handed down twice. */
static void follow_inheritance(struct cw_analysis *a, const struct cw_process *proc, int fd,
                               uint64_t inode, int *origin, uint32_t *open_stack,
                               struct cw_process **open_proc)
{
    for (int hops = 0; hops < 8 && *origin == CW_ORIGIN_INHERITED && !*open_stack && inode;
         hops++) {
        const struct cw_process *q = *open_proc ? *open_proc : proc;
        if (!q->has_ring)
            break;
        struct cw_process *donor = NULL;
        struct cw_fd_entry e = {0};
        for (int k = 0; k < a->nprocs && !donor; k++) {
            struct cw_process *d = a->procs[k];
            if (!is_donor(d, q))
                continue;
            /* fork and exec keep fd numbers: look there first. */
            if (fd >= 0 && cw_ring_fd(&d->ring, (uint32_t)fd, &e) && e.sid && e.inode == inode) {
                donor = d;
                break;
            }
            for (uint32_t n = 0; n < d->ring.hdr.fd_cap; n++)
                if (cw_ring_fd(&d->ring, n, &e) && e.sid && e.inode == inode) {
                    donor = d;
                    break;
                }
        }
        if (!donor)
            break;
        *open_proc = donor;
        *open_stack = e.open_stack;
        if (e.origin != CW_ORIGIN_INHERITED)
            *origin = e.origin; /* how it was really opened, by the donor */
    }
}

void cw_analysis_link_inherited(struct cw_analysis *a)
{
    for (int i = 0; i < a->nfindings; i++) {
        struct cw_finding *f = &a->findings[i];
        follow_inheritance(a, f->proc, f->fd, f->inode, &f->origin, &f->open_stack, &f->open_proc);
        if (f->listener.fd >= 0)
            follow_inheritance(a, f->proc, f->listener.fd, f->listener.inode, &f->listener.origin,
                               &f->listener.open_stack, &f->listener.open_proc);
    }
}

/* ---- counting and grouping ------------------------------------------------ */

/* Whether stack sx of qx's ring and sy of qy's are the same code, compared
 * as module-relative addresses so forked children and reruns match too. */
static int same_code(const struct cw_process *qx, uint32_t sx, const struct cw_process *qy,
                     uint32_t sy)
{
    if (qx == qy)
        return sx == sy;
    uint64_t px[CW_MAX_DEPTH], py[CW_MAX_DEPTH];
    int nx = cw_ring_stack(&qx->ring, sx, px, CW_MAX_DEPTH);
    int ny = cw_ring_stack(&qy->ring, sy, py, CW_MAX_DEPTH);
    if (nx != ny)
        return 0;
    for (int i = 0; i < nx; i++) {
        const struct cw_module *mx = cw_module_at(qx->modules, qx->nmodules, px[i]);
        const struct cw_module *my = cw_module_at(qy->modules, qy->nmodules, py[i]);
        if (!mx || !my) {
            if (px[i] != py[i])
                return 0;
        } else if (strcmp(mx->path, my->path) || px[i] - mx->bias != py[i] - my->bias) {
            return 0;
        }
    }
    return 1;
}

static const struct cw_process *listener_proc(const struct cw_finding *f)
{
    return f->listener.open_proc ? f->listener.open_proc : f->proc;
}

/* Two findings belong together if they share kind and open stack (the
 * close stack for those a close places), and for accepted sockets the
 * listener's: one event loop accepting for two servers makes two groups. */
static int same_stack(const struct cw_finding *x, const struct cw_finding *y)
{
    if (x->kind != y->kind)
        return 0;
    int by_close = cw_kind(x->kind)->placed_by == CW_PLACE_CLOSE;
    uint32_t sx = by_close ? x->close_stack : x->open_stack;
    uint32_t sy = by_close ? y->close_stack : y->open_stack;
    const struct cw_process *qx = by_close ? x->proc : cw_open_proc(x);
    const struct cw_process *qy = by_close ? y->proc : cw_open_proc(y);
    if (!sx || !sy || !qx->has_ring || !qy->has_ring)
        return !sx && !sy && x->proc == y->proc;
    if (!same_code(qx, sx, qy, sy))
        return 0;
    /* One dial goroutine's stack for every request: the requests split them. */
    uint32_t rx = x->request_stack, ry = y->request_stack;
    if (!by_close && (rx || ry) &&
        !(rx && ry && x->proc->has_ring && y->proc->has_ring &&
          same_code(x->proc, rx, y->proc, ry)))
        return 0;
    uint32_t lx = x->listener.open_stack, ly = y->listener.open_stack;
    if (by_close || (!lx && !ly))
        return 1;
    return lx && ly && listener_proc(x)->has_ring && listener_proc(y)->has_ring &&
           same_code(listener_proc(x), lx, listener_proc(y), ly);
}

static const struct cw_analysis *sort_ctx;

static double worst_seconds(const struct cw_group *g)
{
    double w = 0;
    for (int i = 0; i < g->n; i++) {
        double s = sort_ctx->findings[g->members[i]].seconds_in_close_wait;
        w = s > w ? s : w;
    }
    return w;
}

/* Within a group: by process, then fd, as a reader scans a listing. */
static int cmp_member(const void *x, const void *y)
{
    const struct cw_finding *a = &sort_ctx->findings[*(const int *)x];
    const struct cw_finding *b = &sort_ctx->findings[*(const int *)y];
    if (a->proc->pid != b->proc->pid)
        return a->proc->pid < b->proc->pid ? -1 : 1;
    return a->fd - b->fd;
}

static int cmp_group(const void *x, const void *y)
{
    const struct cw_group *a = x, *b = y;
    if (cw_kind(a->kind)->rank != cw_kind(b->kind)->rank)
        return cw_kind(a->kind)->rank - cw_kind(b->kind)->rank;
    if (a->n != b->n)
        return b->n - a->n;
    double wa = worst_seconds(a), wb = worst_seconds(b);
    if (wa != wb)
        return wa < wb ? 1 : -1;
    return a->members[0] - b->members[0];
}

int cw_group_findings(const struct cw_analysis *a, struct cw_group **groups)
{
    struct cw_group *g = NULL;
    int ng = 0, gcap = 0;
    int *caps = NULL; /* capacity of each group's member array */
    for (int i = 0; i < a->nfindings; i++) {
        const struct cw_finding *f = &a->findings[i];
        if (f->suppressed)
            continue;
        int k = 0;
        while (k < ng && !same_stack(&a->findings[g[k].members[0]], f))
            k++;
        if (k == ng) {
            if (ng == gcap) {
                gcap = gcap ? gcap * 2 : 16;
                g = cw_xrealloc(g, (size_t)gcap * sizeof *g);
                caps = cw_xrealloc(caps, (size_t)gcap * sizeof *caps);
            }
            g[ng] = (struct cw_group){.members = NULL, .n = 0, .kind = f->kind};
            caps[ng++] = 0;
        }
        if (g[k].n == caps[k]) {
            caps[k] = caps[k] ? caps[k] * 2 : 4;
            g[k].members = cw_xrealloc(g[k].members, (size_t)caps[k] * sizeof(int));
        }
        g[k].members[g[k].n++] = i;
    }
    free(caps);
    sort_ctx = a;
    for (int k = 0; k < ng; k++)
        qsort(g[k].members, (size_t)g[k].n, sizeof(int), cmp_member);
    if (ng)
        qsort(g, (size_t)ng, sizeof *g, cmp_group);
    *groups = g;
    return ng;
}

void cw_free_groups(struct cw_group *g, int n)
{
    for (int i = 0; i < n; i++)
        free(g[i].members);
    free(g);
}

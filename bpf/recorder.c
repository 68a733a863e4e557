/*
 * recorder.c - the user side of the bpf recorder: loads closewatch.bpf.c,
 * drains its ring buffer on a thread of its own, and turns each traced
 * process's events into that process's ring file (ring_writer.c), the same
 * file the preload would have written, so that nothing downstream knows
 * which recorder wrote it. Each ring gets the preload's sampler (the
 * library run as a program, as the preload starts it), which marks the
 * sockets the kernel holds in CLOSE_WAIT and keeps the count series.
 *
 * One ring per process: with skip_preloaded (--recorder=both), a process
 * that has libclosewatch.so mapped is the preload's and its events are
 * dropped here.
 */
#include "recorder.h"
#include "events.h"
#include "go_probes.h"
#include "ring_writer.h"
#include "closewatch.skel.h"
#include "../common/proc_stat.h"
#include "../common/sock_addr.h"

#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

_Static_assert(CWB_PROMPT_CLOSE_NS == CW_PROMPT_CLOSE_NS, "the kernel side's prompt close");

enum proc_state { P_NEW, P_MINE, P_PRELOAD };

struct proc {
    pid_t pid;
    int state;
    int attach; /* running before it was traced (cwb_attach) */
    pid_t sampler;
    struct cwb_ring ring;
};

struct cwb_recorder {
    struct cwb_config cfg;
    struct closewatch_bpf *skel;
    struct ring_buffer *rb;
    struct cwb_go_probes *go;
    pthread_t thread;
    _Atomic int stop;
    /* The process table is the drain thread's, but cwb_attach adds to it
     * from the caller's: each event and each attach holds the lock. */
    pthread_mutex_t lock;
    struct proc *procs;
    size_t nprocs, cap;
    pid_t *samplers;
    size_t nsamplers, samplers_cap;
};

struct sock_key {
    uint32_t tgid;
    int32_t fd;
};
struct sock_val {
    uint16_t type, pad;
    uint32_t eofs;
};

static char *libbpf_err;
static size_t libbpf_errlen;

static int keep_libbpf_message(enum libbpf_print_level level, const char *fmt, va_list ap)
{
    if (level == LIBBPF_WARN && libbpf_err)
        vsnprintf(libbpf_err, libbpf_errlen, fmt, ap);
    return 0;
}

static int on_event(void *ctx, void *data, size_t size);
static void adopt_sockets(struct cwb_recorder *r, struct proc *p);

/* How often the drain empties the ring buffer: the kernel side wakes it
 * only when the buffer fills (closewatch.bpf.c, WAKE_AT). Well under the
 * sampler's 500 ms before it takes an fd it cannot match for untracked or
 * vanished (preload/sampler.c, RECONCILE_CONFIRM_NS). */
#define CWB_DRAIN_MS 50

static void *drain(void *arg)
{
    struct cwb_recorder *r = arg;
    while (!atomic_load(&r->stop)) {
        /* A timeout returns without reading: consume what came meanwhile. */
        if (ring_buffer__poll(r->rb, CWB_DRAIN_MS) == 0)
            ring_buffer__consume(r->rb);
        for (size_t i = 0; i < r->nsamplers; i++)
            if (r->samplers[i] > 0 && waitpid(r->samplers[i], NULL, WNOHANG) == r->samplers[i])
                r->samplers[i] = 0;
    }
    return NULL;
}

struct cwb_recorder *cwb_start(const struct cwb_config *cfg, char *err, size_t errlen)
{
    struct cwb_recorder *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->cfg = *cfg;
    pthread_mutex_init(&r->lock, NULL);
    libbpf_err = err;
    libbpf_errlen = errlen;
    err[0] = 0;
    libbpf_set_print(keep_libbpf_message);
    r->skel = closewatch_bpf__open_and_load();
    int rc = r->skel ? closewatch_bpf__attach(r->skel) : -errno;
    if (rc == 0) {
        r->rb = ring_buffer__new(bpf_map__fd(r->skel->maps.events), on_event, r, NULL);
        rc = r->rb ? 0 : -errno;
    }
    if (rc == 0)
        rc = (r->go = cwb_go_probes_new(r->skel)) ? 0 : -ENOMEM;
    if (rc == 0)
        rc = -pthread_create(&r->thread, NULL, drain, r);
    if (rc != 0) {
        if (!err[0])
            snprintf(err, errlen, "%s", strerror(-rc));
        err[strcspn(err, "\n")] = 0;
        cwb_go_probes_free(r->go);
        ring_buffer__free(r->rb);
        closewatch_bpf__destroy(r->skel);
        free(r);
        libbpf_err = NULL;
        return NULL;
    }
    libbpf_err = NULL; /* err is the caller's, for this call only */
    return r;
}

int cwb_probe(struct cwb_recorder *r, const char *path)
{
    return cwb_go_probe(r->go, path);
}

int cwb_trace(struct cwb_recorder *r, pid_t pid)
{
    uint32_t k = (uint32_t)pid;
    uint8_t fresh = 1; /* TRACED_NEW: its first record wakes the drain */
    return bpf_map_update_elem(bpf_map__fd(r->skel->maps.traced), &k, &fresh, BPF_ANY);
}

/* ---- processes ------------------------------------------------------------- */

static struct proc *proc_find(struct cwb_recorder *r, pid_t pid)
{
    for (size_t i = 0; i < r->nprocs; i++)
        if (r->procs[i].pid == pid)
            return &r->procs[i];
    return NULL;
}

static struct proc *proc_get(struct cwb_recorder *r, pid_t pid)
{
    struct proc *p = proc_find(r, pid);
    if (p)
        return p;
    if (r->nprocs == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct proc *v = realloc(r->procs, cap * sizeof *v);
        if (!v)
            return NULL;
        r->procs = v;
        r->cap = cap;
    }
    p = &r->procs[r->nprocs++];
    memset(p, 0, sizeof *p);
    p->pid = pid;
    return p;
}

static void proc_forget(struct cwb_recorder *r, struct proc *p)
{
    cwb_ring_release(&p->ring);
    *p = r->procs[--r->nprocs];
}

static void sock_forget(struct cwb_recorder *r, pid_t pid, int fd)
{
    struct sock_key k = {(uint32_t)pid, fd};
    bpf_map_delete_elem(bpf_map__fd(r->skel->maps.socks), &k);
}

static void sock_learn(struct cwb_recorder *r, pid_t pid, int fd, int type)
{
    struct sock_key k = {(uint32_t)pid, fd};
    struct sock_val v = {.type = (uint16_t)type};
    bpf_map_update_elem(bpf_map__fd(r->skel->maps.socks), &k, &v, BPF_ANY);
}

/* Whether pid has libclosewatch.so mapped: the preload records it. */
static int preloaded(pid_t pid)
{
    char path[64], line[512];
    snprintf(path, sizeof path, "/proc/%d/maps", (int)pid);
    FILE *f = fopen(path, "r");
    int found = 0;
    while (f && !found && fgets(line, sizeof line, f))
        found = strstr(line, "/libclosewatch.so") != NULL;
    if (f)
        fclose(f);
    return found;
}

/* The preload's sampler on p's ring, run as the ring's owner, with no fd
 * of ours and an empty environment. */
static void start_sampler(struct cwb_recorder *r, struct proc *p, uid_t uid, gid_t gid)
{
    struct cw_pstat st;
    if (!r->cfg.sampler || !r->cfg.sample_ms || cwb_proc_stat(p->pid, &st) != 0 || !st.image_known)
        return;
    char spid[16], ms[16], image[24];
    snprintf(spid, sizeof spid, "%d", (int)p->pid);
    snprintf(ms, sizeof ms, "%u", r->cfg.sample_ms);
    snprintf(image, sizeof image, "%llu", (unsigned long long)st.image);
    char *argv[] = {"closewatch-sampler", spid, p->ring.path, ms, "1", image, NULL};
    char *envp[] = {NULL};
    pid_t s = fork();
    if (s == 0) {
        if (setgid(gid) != 0 || setuid(uid) != 0)
            _exit(1);
        syscall(SYS_close_range, 0, ~0u, 0);
        execve(r->cfg.sampler, argv, envp);
        _exit(127);
    }
    if (s < 0)
        return;
    p->sampler = s;
    p->ring.h->sampler_pid = s; /* as the preload's ring says it: the analyzer waits on it */
    if (r->nsamplers == r->samplers_cap) {
        size_t cap = r->samplers_cap ? r->samplers_cap * 2 : 16;
        pid_t *v = realloc(r->samplers, cap * sizeof *v);
        if (!v)
            return;
        r->samplers = v;
        r->samplers_cap = cap;
    }
    r->samplers[r->nsamplers++] = s;
}

/* p's ring, made at its first event: NULL when it is the preload's or
 * cannot be made. */
static struct cwb_ring *ring_of(struct cwb_recorder *r, struct proc *p)
{
    if (p->state == P_MINE)
        return &p->ring;
    if (p->state == P_PRELOAD)
        return NULL;
    if (r->cfg.skip_preloaded && preloaded(p->pid)) {
        p->state = P_PRELOAD;
        return NULL;
    }
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/proc/%d", (int)p->pid);
    if (stat(path, &st) != 0 || cwb_ring_create(&p->ring, r->cfg.dir, p->pid, st.st_uid, st.st_gid,
                                                r->cfg.depth, r->cfg.sample_ms) != 0)
        return NULL;
    p->state = P_MINE;
    if (p->attach) {
        cwb_ring_mark_attached(&p->ring);
        adopt_sockets(r, p);
    }
    start_sampler(r, p, st.st_uid, st.st_gid);
    return &p->ring;
}

/* ---- events ---------------------------------------------------------------- */

/* The event's user stack, interned in ring. */
static uint32_t ev_stack(struct cwb_ring *ring, const struct cwb_event *ev)
{
    return cwb_ring_stack(ring, (const uint64_t *)ev->stack, ev->nstack);
}

static void to_addr(struct cw_addr *out, const struct cwb_sockaddr *in)
{
    memset(out, 0, sizeof *out);
    out->family = in->family;
    out->port = in->port;
    memcpy(out->bytes, in->addr, in->family == 2 ? 4 : 16);
}

static void record_socket(struct cwb_ring *ring, const struct cwb_event *ev, int fd, int origin,
                          int family, int type, int src_fd, uint32_t flags)
{
    struct cw_addr local, peer;
    to_addr(&local, &ev->local);
    to_addr(&peer, &ev->peer);
    int ends = ev->local.family && ev->local.port;
    struct cwb_open o = {.fd = fd,
                         .origin = origin,
                         .family = family,
                         .type = type,
                         .src_fd = src_fd,
                         .inode = ev->inode,
                         .ts = ev->ts,
                         .tid = ev->tid,
                         .stack = ev_stack(ring, ev),
                         .local = ends ? &local : NULL,
                         .peer = ends && ev->peer.port ? &peer : NULL,
                         .flags = flags};
    cwb_ring_open(ring, &o);
}

/* Marks the ends the kernel gave at a connect or listen. */
static void learn_ends(struct cw_fd_entry *e, const struct cwb_event *ev)
{
    if (ev->local.family && ev->local.port)
        to_addr(&e->local, &ev->local);
    if (ev->peer.family && ev->peer.port)
        to_addr(&e->peer, &ev->peer);
}

static void on_fork(struct cwb_recorder *r, struct proc *parent, pid_t child_pid, uint64_t ts)
{
    struct proc *child = proc_get(r, child_pid);
    if (!child || !parent || parent->state != P_MINE)
        return;
    struct cwb_ring *pr = &parent->ring;
    uint32_t hwm = pr->h->fd_hwm, open = 0;
    for (uint32_t fd = 0; fd < hwm; fd++)
        open += (cwb_ring_fd(pr, (int)fd)->sid & CW_SID_OPEN) != 0;
    if (!open)
        return;
    /* The child holds copies of the parent's sockets (shared now): its own
     * ring starts with them, and the kernel side must know them as its. */
    struct cwb_ring *cr = ring_of(r, child);
    if (!cr)
        return;
    for (uint32_t fd = 0; fd < hwm; fd++) {
        const struct cw_fd_entry *pe = cwb_ring_fd(pr, (int)fd);
        if (!(pe->sid & CW_SID_OPEN))
            continue;
        const uint64_t *pcs = NULL;
        uint32_t depth = 0;
        if (pe->open_stack && pe->open_stack <= pr->h->stack_cap) {
            const struct cw_stack_slot *s =
                (const void *)((const uint8_t *)pr->h + pr->h->stack_off +
                               (size_t)(pe->open_stack - 1) * pr->h->stack_slot_size);
            pcs = s->pcs;
            depth = s->ready ? s->depth : 0;
        }
        struct cwb_open o = {.fd = (int)fd,
                             .origin = CW_ORIGIN_INHERITED,
                             .family = pe->family,
                             .type = pe->type,
                             .src_fd = -1,
                             .inode = pe->inode,
                             .ts = ts,
                             .stack = pcs ? cwb_ring_stack(cr, pcs, (int)depth) : 0,
                             .local = &pe->local,
                             .peer = &pe->peer,
                             .flags = (pe->flags & ~CW_FD_FROM_FORK) | CW_FD_FROM_FORK};
        struct cw_fd_entry *ce = cwb_ring_open(cr, &o);
        if (ce)
            ce->eof_ns = pe->eof_ns;
        sock_learn(r, child_pid, (int)fd, pe->type);
    }
}

/* After an exec: the sockets that survived it (no close-on-exec) are the
 * new image's, inherited; the others are gone. */
static void on_exec(struct cwb_recorder *r, struct proc *p, uint64_t ts)
{
    char exe[64];
    snprintf(exe, sizeof exe, "/proc/%d/exe", (int)p->pid);
    cwb_go_probe(r->go, exe); /* late for its first requests, not for the rest */
    if (p->state != P_MINE) {
        p->state = P_NEW;
        return;
    }
    struct cwb_ring old = p->ring;
    cwb_ring_mark_execed(&old, ts);
    p->state = P_NEW;
    uint32_t hwm = old.h->fd_hwm;
    struct cwb_ring *nr = NULL;
    for (uint32_t fd = 0; fd < hwm; fd++) {
        const struct cw_fd_entry *e = cwb_ring_fd(&old, (int)fd);
        if (!(e->sid & CW_SID_OPEN))
            continue;
        char link[64], target[64], want[64];
        snprintf(link, sizeof link, "/proc/%d/fd/%u", (int)p->pid, fd);
        snprintf(want, sizeof want, "socket:[%llu]", (unsigned long long)e->inode);
        ssize_t n = readlink(link, target, sizeof target - 1);
        target[n > 0 ? n : 0] = 0;
        if (strcmp(target, want) != 0) {
            sock_forget(r, p->pid, (int)fd);
            continue;
        }
        if (!nr && !r->cfg.skip_preloaded)
            nr = ring_of(r, p);
        if (!nr)
            continue;
        struct cwb_open o = {.fd = (int)fd,
                             .origin = CW_ORIGIN_INHERITED,
                             .family = e->family,
                             .type = e->type,
                             .src_fd = -1,
                             .inode = e->inode,
                             .ts = ts,
                             .local = &e->local,
                             .peer = &e->peer,
                             .flags = e->flags};
        cwb_ring_open(nr, &o);
    }
    cwb_ring_release(&old);
}

/* The process is gone. An exit (exit_group, a return from main) marks the
 * ring EXITED as the preload's destructor does; a process killed by a
 * signal leaves it running, which the analyzer reads as died. */
static void on_exit_of(struct cwb_recorder *r, struct proc *p, int wait_status, uint64_t ts)
{
    if (p->state == P_MINE) {
        if (WIFEXITED(wait_status))
            cwb_ring_mark_exited(&p->ring, ts);
        uint32_t hwm = p->ring.h->fd_hwm;
        for (uint32_t fd = 0; fd < hwm; fd++)
            if (cwb_ring_fd(&p->ring, (int)fd)->sid & CW_SID_OPEN)
                sock_forget(r, p->pid, (int)fd);
    }
    proc_forget(r, p);
}

static int handle_event(struct cwb_recorder *r, const void *data, size_t size)
{
    const struct cwb_event *ev = data;
    if (size < sizeof *ev)
        return 0;
    struct proc *p = proc_get(r, (pid_t)ev->tgid);
    if (!p)
        return 0;
    switch (ev->kind) {
    case CWB_FORK: on_fork(r, p, (pid_t)ev->a0, ev->ts); return 0;
    case CWB_EXEC: on_exec(r, p, ev->ts); return 0;
    case CWB_EXIT: on_exit_of(r, p, (int)ev->a0, ev->ts); return 0;
    }
    struct cwb_ring *ring = ring_of(r, p);
    if (!ring) {
        if (ev->fd >= 0 && ev->kind != CWB_CLOSE)
            sock_forget(r, p->pid, ev->fd);
        if (ev->kind == CWB_SOCKETPAIR)
            sock_forget(r, p->pid, (int)ev->a0);
        return 0;
    }
    struct cw_fd_entry *e = cwb_ring_fd(ring, ev->fd);
    int open = e && (e->sid & CW_SID_OPEN);
    uint64_t sid = e ? e->sid & ~CW_SID_OPEN : 0;
    switch (ev->kind) {
    case CWB_SOCKET:
        record_socket(ring, ev, ev->fd, CW_ORIGIN_SOCKET, (int)ev->a0, (int)ev->a1, -1, 0);
        break;
    case CWB_SOCKETPAIR:
        record_socket(ring, ev, ev->fd, CW_ORIGIN_SOCKETPAIR, (int)ev->a1, (int)ev->a2, -1, 0);
        record_socket(ring, ev, (int)ev->a0, CW_ORIGIN_SOCKETPAIR, (int)ev->a1, (int)ev->a2, -1, 0);
        break;
    case CWB_ACCEPT: {
        const struct cw_fd_entry *l = cwb_ring_fd(ring, (int)ev->a0);
        int family = ev->sk_family ? ev->sk_family : l ? l->family : 0;
        record_socket(ring, ev, ev->fd, CW_ORIGIN_ACCEPT, family,
                      ev->sk_type ? ev->sk_type : SOCK_STREAM, (int)ev->a0, CW_FD_CONNECTED);
        break;
    }
    case CWB_CONNECT: {
        if (!open)
            break;
        long ret = (long)ev->a0;
        if (ret == 0 || ret == -EINPROGRESS || ret == -EAGAIN || ret == -EINTR) {
            e->flags |= CW_FD_CONNECTED;
            learn_ends(e, ev);
        }
        cwb_ring_event(ring, ev->ts, ev->tid, CW_EV_CONNECT, ev->fd, sid, ev_stack(ring, ev),
                       ret < 0 ? -1 : ret, ret < 0 ? -ret : 0, 0);
        break;
    }
    case CWB_LISTEN:
        if (open && ev->a0 == 0) {
            e->flags |= CW_FD_LISTENING;
            learn_ends(e, ev);
        }
        break;
    case CWB_SHUTDOWN: {
        long how = (long)ev->a0, ret = (long)ev->a1;
        if (!open || how < 0 || how > 2)
            break;
        if (ret == 0) {
            e->shut_how |= 1u << how;
            e->flags |= how != SHUT_WR ? CW_FD_SHUT_RD : 0;
            e->flags |= how != SHUT_RD ? CW_FD_SHUT_WR : 0;
        }
        cwb_ring_event(ring, ev->ts, ev->tid, CW_EV_SHUTDOWN, ev->fd, sid, ev_stack(ring, ev), how,
                       ret < 0 ? -1 : ret, 0);
        break;
    }
    case CWB_REQUEST:
        if (open)
            e->request_stack = ev_stack(ring, ev);
        break;
    case CWB_CLOSE:
        cwb_ring_close(ring, ev->fd, ev->ts, ev->tid, (int)ev->a0, ev_stack(ring, ev),
                       (uint32_t)ev->a1, (int)ev->a2);
        break;
    case CWB_CLOSE_RANGE: {
        uint32_t hwm = ring->h->fd_hwm;
        uint64_t last = (uint64_t)ev->a1 < hwm ? (uint64_t)ev->a1 : (uint64_t)hwm - 1;
        uint32_t stack = 0;
        for (uint64_t fd = (uint64_t)ev->a0; hwm && fd <= last; fd++) {
            if (!(cwb_ring_fd(ring, (int)fd)->sid & CW_SID_OPEN))
                continue;
            if (!stack)
                stack = ev_stack(ring, ev);
            cwb_ring_close(ring, (int)fd, ev->ts, ev->tid, CW_CLOSE_RANGE, stack, 0, -1);
            sock_forget(r, p->pid, (int)fd);
        }
        break;
    }
    case CWB_DUP: {
        const struct cw_fd_entry *src = cwb_ring_fd(ring, (int)ev->a0);
        if (!src || !(src->sid & CW_SID_OPEN))
            break;
        struct cwb_open o = {.fd = ev->fd,
                             .origin = CW_ORIGIN_DUP,
                             .family = src->family,
                             .type = src->type,
                             .src_fd = (int)ev->a0,
                             .inode = src->inode,
                             .ts = ev->ts,
                             .tid = ev->tid,
                             .stack = ev_stack(ring, ev),
                             .local = &src->local,
                             .peer = &src->peer,
                             .flags = src->flags & ~CW_FD_FROM_FORK};
        struct cw_fd_entry *d = cwb_ring_open(ring, &o);
        if (d)
            d->eof_ns = src->eof_ns;
        break;
    }
    case CWB_EOF:
        if (!open)
            break;
        if ((uint64_t)ev->a0 > e->eof_count)
            e->eof_count = (uint32_t)ev->a0;
        if (!e->eof_ns && ev->nstack) {
            e->eof_stack = ev_stack(ring, ev);
            e->eof_ns = ev->ts;
            cwb_ring_event(ring, ev->ts, ev->tid, CW_EV_EOF, ev->fd, sid, e->eof_stack, CW_EOF_READ,
                           0, 0);
        }
        break;
    }
    return 0;
}

static int on_event(void *ctx, void *data, size_t size)
{
    struct cwb_recorder *r = ctx;
    pthread_mutex_lock(&r->lock);
    int rc = handle_event(r, data, size);
    pthread_mutex_unlock(&r->lock);
    return rc;
}

/* ---- attaching to a running process ------------------------------------------ */

/* Writes the sockets pid holds now into its ring, without stacks (nobody
 * saw them made), and tells the kernel side they are sockets, so that their
 * EOFs and closes are recorded from now on. Each is looked at through a
 * copy of the fd (pidfd_getfd) held only for a few calls. */
static void adopt_sockets(struct cwb_recorder *r, struct proc *p)
{
    char dir[64];
    snprintf(dir, sizeof dir, "/proc/%d/fd", (int)p->pid);
    DIR *d = opendir(dir);
    int pidfd = (int)syscall(SYS_pidfd_open, (long)p->pid, 0L);
    struct dirent *de;
    while (d && pidfd >= 0 && (de = readdir(d))) {
        char link[320], target[64];
        unsigned long long inode;
        snprintf(link, sizeof link, "%s/%s", dir, de->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        target[n > 0 ? n : 0] = 0;
        if (de->d_name[0] < '0' || de->d_name[0] > '9' ||
            sscanf(target, "socket:[%llu]", &inode) != 1)
            continue;
        int fd = atoi(de->d_name);
        int copy = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
        if (copy < 0)
            continue; /* closed meanwhile */
        int family = 0, type = 0, protocol = 0, listening = 0;
        socklen_t len = sizeof family;
        getsockopt(copy, SOL_SOCKET, SO_DOMAIN, &family, &len);
        len = sizeof type;
        getsockopt(copy, SOL_SOCKET, SO_TYPE, &type, &len);
        len = sizeof protocol;
        getsockopt(copy, SOL_SOCKET, SO_PROTOCOL, &protocol, &len);
        len = sizeof listening;
        getsockopt(copy, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
        struct sockaddr_storage ss;
        struct cw_addr local = {0}, peer = {0};
        int have_local = 0, have_peer = 0;
        len = sizeof ss;
        if (getsockname(copy, (struct sockaddr *)&ss, &len) == 0)
            cw_addr_from_sockaddr(&local, (struct sockaddr *)&ss, len), have_local = 1;
        len = sizeof ss;
        if (getpeername(copy, (struct sockaddr *)&ss, &len) == 0)
            cw_addr_from_sockaddr(&peer, (struct sockaddr *)&ss, len), have_peer = 1;
        close(copy);
        struct cwb_open o = {.fd = fd,
                             .origin = CW_ORIGIN_UNTRACKED,
                             .family = family,
                             .type = type,
                             .protocol = protocol,
                             .src_fd = -1,
                             .inode = inode,
                             .ts = p->ring.h->attach_mono_ns,
                             .local = have_local ? &local : NULL,
                             .peer = have_peer ? &peer : NULL,
                             .flags = (listening ? CW_FD_LISTENING : 0) |
                                      (have_peer ? CW_FD_CONNECTED : 0)};
        if (cwb_ring_open(&p->ring, &o))
            sock_learn(r, p->pid, fd, type);
    }
    if (pidfd >= 0)
        close(pidfd);
    if (d)
        closedir(d);
}

int cwb_attach(struct cwb_recorder *r, pid_t pid, char *err, size_t errlen)
{
    pthread_mutex_lock(&r->lock);
    struct proc *p = proc_get(r, pid);
    int rc = -1;
    if (!p)
        snprintf(err, errlen, "out of memory");
    else if (preloaded(pid))
        snprintf(err, errlen, "it runs with libclosewatch.so: the preload records it");
    else if (p->state != P_NEW)
        snprintf(err, errlen, "already traced");
    else if (cwb_trace(r, pid) != 0)
        snprintf(err, errlen, "cannot trace it: %s", strerror(errno));
    else {
        /* Traced first, then looked at: a socket made in between is seen
         * both ways and its event finds it adopted (same inode) and gives
         * it its stack; the drain thread waits on the lock meanwhile. */
        p->attach = 1;
        if (ring_of(r, p))
            rc = 0;
        else
            snprintf(err, errlen, "cannot make its ring in %s: %s", r->cfg.dir, strerror(errno));
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

/* A process still running when the recording stops (a daemon outliving
 * `closewatch run`, the process `watch --record` left): its ring says when
 * its record ends. */
static int still_running(pid_t pid)
{
    struct cw_pstat st;
    return cwb_proc_stat(pid, &st) == 0 && st.state != 'Z' && st.state != 'X';
}

unsigned long long cwb_stop(struct cwb_recorder *r)
{
    atomic_store(&r->stop, 1);
    pthread_join(r->thread, NULL);
    ring_buffer__consume(r->rb);
    unsigned long long lost = 0;
    for (uint32_t k = 0; k < 2; k++) {
        uint64_t v = 0;
        if (bpf_map_lookup_elem(bpf_map__fd(r->skel->maps.lost), &k, &v) == 0)
            lost += v;
    }
    ring_buffer__free(r->rb);
    cwb_go_probes_free(r->go);
    closewatch_bpf__destroy(r->skel);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    for (size_t i = 0; i < r->nprocs; i++)
        if (r->procs[i].state == P_MINE && still_running(r->procs[i].pid))
            cwb_ring_mark_detached(&r->procs[i].ring,
                                   (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec);
    while (r->nprocs)
        proc_forget(r, &r->procs[0]);
    free(r->procs);
    free(r->samplers);
    pthread_mutex_destroy(&r->lock);
    free(r);
    return lost;
}

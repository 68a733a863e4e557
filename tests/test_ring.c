/*
 * test_ring.c - the recorder's ring file, read back with the shm_reader API:
 * events come back complete and in order, torn records are detected,
 * wrap-around is counted, backtraces are interned per call site, and fd
 * numbers get a new socket id whenever dup2/dup3/close_range/F_DUPFD and
 * friends change what they refer to.
 *
 * Fixtures run with the sampler off (CLOSEWATCH_SAMPLE_MS=0) so the ring
 * holds exactly what the program did, nothing the sampler added.
 */
#include <criterion/criterion.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "harness.h"
#include "recorder_util.h"

static int event_type_from_name(const char *name)
{
    for (int t = CW_EV_NONE + 1; t < CW_EV_TYPE_MAX; t++)
        if (!strcmp(cw_event_type_name((unsigned)t), name))
            return t;
    cr_assert_fail("unknown event type \"%s\"", name);
    return CW_EV_NONE;
}

Test(ring, round_trip_every_event_in_order, .timeout = 30, .fini = drop_test_dir)
{
    char *dir = test_dir("ring-rt");
    char *argv[] = {(char *)FIXTURE("socket_churn"), NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=0", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);

    /* What the fixture says it did, in order. */
    struct {
        int type, fd;
    } want[64];
    int nwant = 0;
    for (;;) {
        char line[128], type[32];
        int fd;
        read_line(&p, line, sizeof line);
        if (!strcmp(line, "done"))
            break;
        cr_assert(sscanf(line, "ev %31s %d", type, &fd) == 2, "bad line \"%s\"", line);
        cr_assert_lt(nwant, 64);
        want[nwant].type = event_type_from_name(type);
        want[nwant++].fd = fd;
    }
    wait_exit_ok(&p, 10000);

    struct cw_ring r;
    open_ring(&r, dir, p.pid);
    struct ev_list evs;
    ev_collect(&r, &evs);
    cr_assert_eq(evs.torn, 0, "%llu torn records in a finished ring", (unsigned long long)evs.torn);
    cr_assert_eq(evs.overwritten, 0);
    cr_expect_eq(r.hdr.exit_state, CW_EXITED);
    cr_assert_eq(evs.n, (size_t)nwant, "ring has %zu events, the fixture caused %d", evs.n, nwant);

    uint64_t sid_of_fd[1024] = {0}, last_open_sid = 0, last_time = 0;
    int opens = 0;
    for (int i = 0; i < nwant; i++) {
        const struct cw_event *e = &evs.v[i];
        cr_assert_eq(e->type, want[i].type, "event %d is %s, expected %s", i,
                     cw_event_type_name(e->type), cw_event_type_name((unsigned)want[i].type));
        cr_assert_eq(e->fd, want[i].fd, "event %d (%s) on fd %d, expected fd %d", i,
                     cw_event_type_name(e->type), e->fd, want[i].fd);
        cr_assert_eq(e->seq, (uint64_t)i + 1, "event %d has seq %llu", i,
                     (unsigned long long)e->seq);
        cr_assert_geq(e->time_ns, last_time, "event %d goes back in time", i);
        cr_assert_eq(e->tid, (uint32_t)p.pid, "single-threaded fixture, event %d tid %u", i,
                     e->tid);
        last_time = e->time_ns;
        cr_assert_lt(e->fd, 1024);
        if (e->type == CW_EV_OPEN) {
            cr_assert_gt(e->sid, last_open_sid, "open %d: sid %llu not above the previous %llu", i,
                         (unsigned long long)e->sid, (unsigned long long)last_open_sid);
            last_open_sid = e->sid;
            sid_of_fd[e->fd] = e->sid;
            opens++;
            cr_assert_neq(e->arg2, 0, "open %d recorded no inode", i);
        } else {
            cr_assert_eq(e->sid, sid_of_fd[e->fd], "%s on fd %d carries sid %llu, the fd's is %llu",
                         cw_event_type_name(e->type), e->fd, (unsigned long long)e->sid,
                         (unsigned long long)sid_of_fd[e->fd]);
        }
        switch (e->type) {
        case CW_EV_CONNECT:
            cr_assert_eq(e->arg0, 0, "connect returned %lld", (long long)e->arg0);
            break;
        case CW_EV_EOF: cr_assert_eq(e->arg0, CW_EOF_READ); break;
        case CW_EV_SHUTDOWN:
            cr_assert_eq(e->arg0, SHUT_WR);
            cr_assert_eq(e->arg1, 0);
            break;
        case CW_EV_CLOSE:
            cr_assert_eq(e->arg0, CW_CLOSE_CLOSE, "close how %lld", (long long)e->arg0);
            break;
        }
    }
    /* Spot checks of the open arguments: the listener was opened by socket(),
     * the served connection by accept() on it, the pair by socketpair(). */
    const struct cw_event *listener_open = &evs.v[0];
    cr_assert_eq(ev_origin(listener_open), CW_ORIGIN_SOCKET);
    cr_assert_eq(ev_family(listener_open), AF_INET);
    cr_assert_eq(ev_socktype(listener_open), SOCK_STREAM);
    int accepted = 0, paired = 0;
    for (size_t i = 0; i < evs.n; i++) {
        const struct cw_event *e = &evs.v[i];
        if (e->type == CW_EV_OPEN && ev_origin(e) == CW_ORIGIN_ACCEPT) {
            cr_assert_eq(e->arg1, listener_open->fd, "accept's source fd");
            accepted++;
        }
        if (e->type == CW_EV_OPEN && ev_origin(e) == CW_ORIGIN_SOCKETPAIR) {
            cr_assert_eq(ev_family(e), AF_UNIX);
            paired++;
        }
        if (e->type == CW_EV_CLOSE && ev_of_sid(&evs, CW_EV_EOF, e->sid))
            cr_assert_eq(e->arg1, 1, "close of the socket that saw EOF: eof_count %lld",
                         (long long)e->arg1);
    }
    cr_assert_eq(accepted, 1);
    cr_assert_eq(paired, 2);

    const struct cw_header *h = live_hdr(&r);
    cr_assert_eq(h->next_sid, (uint64_t)opens + 1, "next_sid %llu after %d opens",
                 (unsigned long long)h->next_sid, opens);
    cr_assert_eq(h->sockets_open, 0);
    cr_assert_eq(h->events_dropped, 0);
    ev_free(&evs);
    cw_ring_close(&r);
}

/* Runs socket_churn with a small ring file and returns its contents. */
static uint8_t *small_ring_copy(const char *dir, size_t *size)
{
    char *argv[] = {(char *)FIXTURE("socket_churn"), NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=0", "CLOSEWATCH_RING_MB=1", "CLOSEWATCH_MAX_FDS=1024",
                   "CLOSEWATCH_DEPTH=8", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    char line[128];
    do
        read_line(&p, line, sizeof line);
    while (strcmp(line, "done"));
    wait_exit_ok(&p, 10000);

    char paths[2][512];
    cr_assert_eq(h_rings(dir, p.pid, paths, 2), 1);
    FILE *f = fopen(paths[0], "rb");
    cr_assert_not_null(f);
    struct stat st;
    cr_assert_eq(fstat(fileno(f), &st), 0);
    uint8_t *buf = malloc((size_t)st.st_size);
    cr_assert_not_null(buf);
    cr_assert_eq(fread(buf, 1, (size_t)st.st_size, f), (size_t)st.st_size);
    fclose(f);
    *size = (size_t)st.st_size;
    return buf;
}

/* Iterates a ring in memory; returns the events read, fills torn and the
 * seq of every event read (seqs must hold at least ring_cap entries). */
static size_t iterate(const struct cw_ring *r, uint64_t *torn, uint64_t *seqs)
{
    struct cw_ring_iter it;
    struct cw_event ev;
    size_t n = 0;
    cw_ring_iter_begin(r, &it);
    while (cw_ring_iter_next(r, &it, &ev))
        seqs[n++] = ev.seq;
    *torn = it.torn;
    return n;
}

Test(ring, torn_record_is_counted_and_skipped, .timeout = 30, .fini = drop_test_dir)
{
    char *dir = test_dir("ring-torn");
    size_t size;
    uint8_t *buf = small_ring_copy(dir, &size);
    struct cw_ring r;
    char err[256];
    cr_assert_eq(cw_ring_from_memory(&r, buf, size, "copy", err, sizeof err), CW_RING_OK, "%s",
                 err);
    uint64_t *seqs = calloc(r.hdr.ring_cap, sizeof *seqs);

    uint64_t torn;
    size_t total = iterate(&r, &torn, seqs);
    cr_assert_eq(torn, 0);
    cr_assert_geq(total, 10, "socket_churn should leave a dozen events, found %zu", total);
    cr_assert_eq(total, live_hdr(&r)->write_idx);

    /* Damage the middle event three ways; each time exactly that one is
     * reported torn and the others still come back. */
    uint64_t victim = total / 2;
    struct cw_event *slot = (struct cw_event *)(buf + r.hdr.ring_off +
                                                (victim & (r.hdr.ring_cap - 1)) * r.hdr.event_size);
    const struct cw_event saved = *slot;
    const struct {
        const char *what;
        uint64_t seq;
        uint16_t type;
    } damage[] = {
        {"seq 0 (writer died mid-record)", 0, saved.type},
        {"seq of a later lap", victim + 1 + r.hdr.ring_cap, saved.type},
        {"seq of the previous slot", victim, saved.type},
        {"type out of range", saved.seq, CW_EV_TYPE_MAX},
    };
    for (size_t d = 0; d < sizeof damage / sizeof *damage; d++) {
        slot->seq = damage[d].seq;
        slot->type = damage[d].type;
        size_t n = iterate(&r, &torn, seqs);
        cr_assert_eq(torn, 1, "%s: torn = %llu", damage[d].what, (unsigned long long)torn);
        cr_assert_eq(n, total - 1, "%s: %zu events read", damage[d].what, n);
        for (size_t i = 0; i < n; i++)
            cr_assert_neq(seqs[i], victim + 1, "%s: the damaged record came back", damage[d].what);
        *slot = saved;
    }
    size_t n = iterate(&r, &torn, seqs);
    cr_assert_eq(n, total, "repaired ring reads %zu of %zu", n, total);
    cr_assert_eq(torn, 0);

    free(seqs);
    free(buf);
}

Test(ring, wrap_around_keeps_the_newest_and_counts_the_rest, .timeout = 30, .fini = drop_test_dir)
{
    char *dir = test_dir("ring-wrap");
    const long pairs = 12000; /* 24000 events into a ring of 16384 */
    char count[32];
    snprintf(count, sizeof count, "%ld", pairs);
    char *argv[] = {(char *)FIXTURE("ring_flood"), count, NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=0", "CLOSEWATCH_RING_MB=1", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    cr_assert_eq(read_value(&p, "done"), pairs);
    wait_exit_ok(&p, 20000);

    struct cw_ring r;
    open_ring(&r, dir, p.pid);
    const struct cw_header *h = live_hdr(&r);
    cr_assert_eq(r.hdr.ring_cap, 16384, "1 MiB of 64-byte events is 16384, got %u", r.hdr.ring_cap);
    cr_assert_eq(h->write_idx, (uint64_t)pairs * 2);
    cr_assert_eq(h->events_dropped, 0);

    struct ev_list evs;
    ev_collect(&r, &evs);
    uint64_t first = h->write_idx - r.hdr.ring_cap;
    cr_assert_eq(evs.overwritten, first, "overwritten %llu, expected write_idx - ring_cap = %llu",
                 (unsigned long long)evs.overwritten, (unsigned long long)first);
    cr_assert_eq(evs.torn, 0);
    cr_assert_eq(evs.n, r.hdr.ring_cap - evs.torn);
    /* Index 2k is the open of sid k + 1, index 2k + 1 its close: the
     * survivors are exactly the newest ring_cap of them, oldest first. */
    for (size_t i = 0; i < evs.n; i++) {
        uint64_t idx = first + i;
        const struct cw_event *e = &evs.v[i];
        cr_assert_eq(e->seq, idx + 1, "survivor %zu has seq %llu, expected %llu", i,
                     (unsigned long long)e->seq, (unsigned long long)idx + 1);
        cr_assert_eq(e->type, idx % 2 ? CW_EV_CLOSE : CW_EV_OPEN, "index %llu is %s",
                     (unsigned long long)idx, cw_event_type_name(e->type));
        cr_assert_eq(e->sid, idx / 2 + 1, "index %llu has sid %llu", (unsigned long long)idx,
                     (unsigned long long)e->sid);
    }
    cr_assert_eq(evs.v[evs.n - 1].sid, (uint64_t)pairs, "the newest event is the last close");
    ev_free(&evs);
    cw_ring_close(&r);
}

Test(ring, stacks_interned_once_per_call_site, .timeout = 30, .fini = drop_test_dir)
{
    char *dir = test_dir("ring-stacks");
    const char *exe = FIXTURE("stack_sites");
    char *argv[] = {(char *)exe, NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=0", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    expect_line(&p, "done");
    wait_exit_ok(&p, 10000);

    struct cw_ring r;
    open_ring(&r, dir, p.pid);
    struct ev_list evs;
    ev_collect(&r, &evs);
    cr_assert_eq(live_hdr(&r)->stacks_dropped, 0);

    /* 100 opens from site a, then 100 from site b, each followed by a close. */
    uint32_t open_ids[200], close_ids[200];
    int opens = 0, closes = 0;
    for (size_t i = 0; i < evs.n; i++) {
        if (evs.v[i].type == CW_EV_OPEN && opens < 200)
            open_ids[opens++] = evs.v[i].stack;
        if (evs.v[i].type == CW_EV_CLOSE && closes < 200)
            close_ids[closes++] = evs.v[i].stack;
    }
    cr_assert_eq(opens, 200);
    cr_assert_eq(closes, 200);
    uint32_t site_a = open_ids[0], site_b = open_ids[100];
    cr_assert_neq(site_a, 0, "no stack recorded for an open");
    cr_assert_neq(site_b, 0);
    cr_assert_neq(site_a, site_b, "two call sites share stack id %u", site_a);
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(open_ids[i], site_a, "open %d from site a got stack %u, not %u", i,
                     open_ids[i], site_a);
        cr_assert_eq(open_ids[100 + i], site_b, "open %d from site b got stack %u, not %u", i,
                     open_ids[100 + i], site_b);
        cr_assert_eq(close_ids[i], close_ids[0], "the closes of loop a have one call site");
        cr_assert_eq(close_ids[100 + i], close_ids[100], "the closes of loop b have one call site");
    }

    struct cw_module fixture_mod;
    cr_assert(find_module(&r, exe, &fixture_mod), "no module entry for %s", exe);
    cr_assert_gt(fixture_mod.build_id_len, 0, "the fixture's build-id was not recorded");
    const char *site_fn[] = {"open_at_site_a", "open_at_site_b"};
    uint32_t ids[] = {site_a, site_b};
    uint64_t top[2];
    for (int s = 0; s < 2; s++) {
        uint64_t pcs[CW_MAX_DEPTH];
        int depth = cw_ring_stack(&r, ids[s], pcs, CW_MAX_DEPTH);
        cr_assert_gt(depth, 2, "stack %u has depth %d", ids[s], depth);
        /* Our own frames are cut: the top frame is the fixture's call. */
        cr_assert(in_module(&fixture_mod, pcs[0]), "top frame 0x%llx of stack %u is outside %s",
                  (unsigned long long)pcs[0], ids[s], fixture_mod.path);
        cr_assert(in_module(&fixture_mod, pcs[1]), "second frame is not main() in the fixture");
        char name[128];
        symbolize(&fixture_mod, pcs[0], name, sizeof name);
        cr_assert_str_eq(name, site_fn[s], "top frame of site %d symbolizes to \"%s\"", s, name);
        symbolize(&fixture_mod, pcs[1], name, sizeof name);
        cr_assert_str_eq(name, "main");
        top[s] = pcs[0];
    }
    cr_assert_neq(top[0], top[1]);
    ev_free(&evs);
    cw_ring_close(&r);
}

/* Whether stack id of r has a frame in mod that symbolizes to fn. */
static int stack_has_fn(const struct cw_ring *r, uint32_t id, const struct cw_module *mod,
                        const char *fn)
{
    uint64_t pcs[CW_MAX_DEPTH];
    int depth = cw_ring_stack(r, id, pcs, CW_MAX_DEPTH);
    for (int i = 0; i < depth; i++) {
        char name[128];
        if (in_module(mod, pcs[i]) && (symbolize(mod, pcs[i], name, sizeof name), 1) &&
            !strcmp(name, fn))
            return 1;
    }
    return 0;
}

/*
 * Runs a fixture that opens `count` sockets from two call paths in turn, the
 * first through x(), the second through y(), both through common(), and
 * checks that every open carries its own path, each path interned once.
 */
static void expect_alternating_paths(const char *tag, const char *fixture, const char *x,
                                     const char *y, const char *common, int count)
{
    char *dir = test_dir(tag);
    const char *exe = h_path(fixture);
    char *argv[] = {(char *)exe, NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=0", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    expect_line(&p, "done");
    wait_exit_ok(&p, 10000);

    struct cw_ring r;
    open_ring(&r, dir, p.pid);
    struct ev_list evs;
    ev_collect(&r, &evs);
    struct cw_module mod;
    cr_assert(find_module(&r, exe, &mod), "no module entry for %s", exe);
    int opens = 0;
    uint32_t first[2] = {0, 0};
    for (size_t i = 0; i < evs.n; i++) {
        const struct cw_event *e = &evs.v[i];
        if (e->type != CW_EV_OPEN)
            continue;
        const char *want = opens % 2 ? y : x, *other = opens % 2 ? x : y;
        cr_assert_neq(e->stack, 0, "open %d has no stack", opens);
        cr_assert(stack_has_fn(&r, e->stack, &mod, want), "open %d: no %s() in its stack %u", opens,
                  want, e->stack);
        cr_assert(!stack_has_fn(&r, e->stack, &mod, other), "open %d: %s() in its stack %u", opens,
                  other, e->stack);
        cr_assert(stack_has_fn(&r, e->stack, &mod, common), "open %d: no %s()", opens, common);
        if (!first[opens % 2])
            first[opens % 2] = e->stack;
        cr_assert_eq(e->stack, first[opens % 2], "open %d: path interned twice", opens);
        opens++;
    }
    cr_assert_eq(opens, count);
    cr_assert_neq(first[0], first[1]);
    ev_free(&evs);
    cw_ring_close(&r);
}

/* Walks that start at the same stack address but come from different
 * callers two frames up (the recorder remembers walks by where they start)
 * must keep their own stacks, call after call. */
Test(ring, same_depth_different_callers_keep_their_stacks, .timeout = 30, .fini = drop_test_dir)
{
    expect_alternating_paths("ring-walks", "fixtures/walk_sites", "via_x", "via_y", "open_here",
                             200);
}

/* A fork child starts with an empty stack table: a walk its parent
 * remembered must not hand it the parent's stack ids. */
Test(ring, fork_child_stacks_are_its_own, .timeout = 30, .fini = drop_test_dir)
{
    char *dir = test_dir("ring-forkwalk");
    const char *exe = FIXTURE("walk_sites");
    char *argv[] = {(char *)exe, "fork", NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=0", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    pid_t child = (pid_t)read_value(&p, "child");
    wait_exit_ok(&p, 10000);

    struct cw_ring r;
    open_ring(&r, dir, child);
    struct ev_list evs;
    ev_collect(&r, &evs);
    struct cw_module mod;
    cr_assert(find_module(&r, exe, &mod), "no module entry for %s", exe);
    const struct cw_event *open = ev_last(&evs, CW_EV_OPEN, ANY_FD);
    cr_assert_not_null(open, "the child recorded no open");
    cr_assert_neq(open->stack, 0);
    cr_assert(stack_has_fn(&r, open->stack, &mod, "via_x"),
              "the child's open has stack %u, without via_x() in the child's table", open->stack);
    ev_free(&evs);
    cw_ring_close(&r);
}

/* The same from a signal handler on an alternate stack above the thread's:
 * the handler's frames are the same each time, the interrupted ones (read
 * from another stack) are not. */
Test(ring, signal_handler_stacks_keep_the_interrupted_path, .timeout = 30, .fini = drop_test_dir)
{
    expect_alternating_paths("ring-altstack", "fixtures/altstack_sites", "wait_x", "wait_y",
                             "on_signal", 20);
}

/* Short-lived threads, each recording from its first frames (a cold walk on
 * a stack its predecessor used): every open keeps its own path, each path
 * interned once across all the threads. */
Test(ring, short_lived_threads_keep_their_stacks, .timeout = 30, .fini = drop_test_dir)
{
    expect_alternating_paths("ring-threads", "fixtures/thread_sites", "thread_x", "thread_y",
                             "open_here", 200);
}

/* A fork child of a process that ran threads: a thread of the child records
 * its own path, in the child's table, under its own tid. */
Test(ring, fork_child_threads_record_their_stack_and_tid, .timeout = 30, .fini = drop_test_dir)
{
    char *dir = test_dir("ring-forkthreads");
    const char *exe = FIXTURE("thread_sites");
    char *argv[] = {(char *)exe, "fork", NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=0", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    long tid = read_value(&p, "tid");
    pid_t child = (pid_t)read_value(&p, "child");
    wait_exit_ok(&p, 10000);

    struct cw_ring r;
    open_ring(&r, dir, child);
    struct ev_list evs;
    ev_collect(&r, &evs);
    struct cw_module mod;
    cr_assert(find_module(&r, exe, &mod), "no module entry for %s", exe);
    const struct cw_event *open = ev_last(&evs, CW_EV_OPEN, ANY_FD);
    cr_assert_not_null(open, "the child recorded no open");
    cr_assert_eq((long)open->tid, tid, "the child's open has tid %u, its thread is %ld", open->tid,
                 tid);
    cr_assert_neq((long)open->tid, (long)child, "the open is the thread's, not the child's main");
    cr_assert(stack_has_fn(&r, open->stack, &mod, "thread_y") &&
                  stack_has_fn(&r, open->stack, &mod, "open_here"),
              "the child's open has stack %u, without thread_y() and open_here()", open->stack);
    cr_assert(!stack_has_fn(&r, open->stack, &mod, "thread_x"));
    ev_free(&evs);
    cw_ring_close(&r);
}

/* The fixture's "name fd" lines. */
struct named_fds {
    char name[32][32];
    int fd[32];
    int n;
};

static int named(const struct named_fds *m, const char *name)
{
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->name[i], name))
            return m->fd[i];
    cr_assert_fail("the fixture did not report \"%s\"", name);
    return -1;
}

/* The open of fd that precedes event index `before` (or the last one). */
static const struct cw_event *open_before(const struct ev_list *l, int fd, size_t before)
{
    const struct cw_event *found = NULL;
    for (size_t i = 0; i < l->n && i < before; i++)
        if (l->v[i].type == CW_EV_OPEN && l->v[i].fd == fd)
            found = &l->v[i];
    return found;
}

static size_t index_of(const struct ev_list *l, const struct cw_event *e)
{
    return (size_t)(e - l->v);
}

Test(ring, fd_generations_through_dup_and_close_family, .timeout = 30, .fini = drop_test_dir)
{
    char *dir = test_dir("ring-dup");
    char *argv[] = {(char *)FIXTURE("dup_matrix"), NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=0", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    struct named_fds m = {0};
    for (;;) {
        char line[128];
        read_line(&p, line, sizeof line);
        if (!strcmp(line, "done"))
            break;
        cr_assert_lt(m.n, 32);
        cr_assert(sscanf(line, "%31s %d", m.name[m.n], &m.fd[m.n]) == 2, "bad line \"%s\"", line);
        m.n++;
    }
    wait_exit_ok(&p, 10000);

    struct cw_ring r;
    open_ring(&r, dir, p.pid);
    struct ev_list evs;
    ev_collect(&r, &evs);
    cr_assert_eq(evs.torn, 0);
    int src = named(&m, "src");
    struct cw_fd_entry src_entry = fd_entry(&r, src);
    cr_assert(entry_open(&src_entry));

    /* dup2 and dup3 over a live socket: the target socket is closed with
     * how = dup2 naming the source, and the number gets a new socket, a
     * copy of the source. */
    const char *over[] = {"dup2_target", "dup3_target"};
    for (int i = 0; i < 2; i++) {
        int target = named(&m, over[i]);
        const struct cw_event *close_ev = ev_last(&evs, CW_EV_CLOSE, target);
        cr_assert_not_null(close_ev, "%s: the socket dup'ed over was not closed", over[i]);
        cr_assert_eq(close_ev->arg0, CW_CLOSE_DUP2, "%s: close how %lld", over[i],
                     (long long)close_ev->arg0);
        cr_assert_eq(close_ev->arg2, src, "%s: close names fd %lld, not the source", over[i],
                     (long long)close_ev->arg2);
        const struct cw_event *old_open = open_before(&evs, target, index_of(&evs, close_ev));
        cr_assert_eq(close_ev->sid, old_open->sid, "%s: closed the wrong socket", over[i]);
        const struct cw_event *new_open = ev_last(&evs, CW_EV_OPEN, target);
        cr_assert_gt(index_of(&evs, new_open), index_of(&evs, close_ev));
        cr_assert_gt(new_open->sid, old_open->sid, "%s: no new sid", over[i]);
        cr_assert_eq(ev_origin(new_open), CW_ORIGIN_DUP);
        cr_assert_eq(new_open->arg1, src);
        cr_assert_eq(new_open->arg2, (int64_t)src_entry.inode, "%s: not the source's inode",
                     over[i]);
        struct cw_fd_entry e = fd_entry(&r, target);
        cr_assert(entry_open(&e), "%s is open at exit", over[i]);
        cr_assert_eq(entry_sid(&e), new_open->sid);
        cr_assert_eq(e.origin, CW_ORIGIN_DUP);
    }

    /* dup and F_DUPFD(_CLOEXEC): a new open of the same socket, nothing closed. */
    const char *copies[] = {"dup", "f_dupfd", "f_dupfd_cloexec"};
    for (int i = 0; i < 3; i++) {
        int fd = named(&m, copies[i]);
        cr_assert_eq(ev_count(&evs, CW_EV_CLOSE, fd), 0, "%s: something was closed", copies[i]);
        cr_assert_eq(ev_count(&evs, CW_EV_OPEN, fd), 1);
        const struct cw_event *o = ev_last(&evs, CW_EV_OPEN, fd);
        cr_assert_eq(ev_origin(o), CW_ORIGIN_DUP, "%s: origin %s", copies[i],
                     cw_origin_name((unsigned)ev_origin(o)));
        cr_assert_eq(o->arg1, src);
        struct cw_fd_entry e = fd_entry(&r, fd);
        cr_assert(entry_open(&e));
        cr_assert_eq(e.inode, src_entry.inode);
    }
    cr_assert_geq(named(&m, "f_dupfd"), 200);
    cr_assert_geq(named(&m, "f_dupfd_cloexec"), 210);

    /* close_range (through syscall() and through libc) and closefrom: every
     * socket in the range is recorded closed, how = close_range. */
    const char *ranges[][2] = {{"range_first", "range_last"},
                               {"libc_range_first", "libc_range_last"},
                               {"closefrom_first", "closefrom_last"}};
    for (int i = 0; i < 3; i++) {
        for (int fd = named(&m, ranges[i][0]); fd <= named(&m, ranges[i][1]); fd++) {
            const struct cw_event *c = ev_last(&evs, CW_EV_CLOSE, fd);
            cr_assert_not_null(c, "%s: fd %d not recorded closed", ranges[i][0], fd);
            cr_assert_eq(c->arg0, CW_CLOSE_RANGE, "%s: fd %d closed how %s", ranges[i][0], fd,
                         cw_close_how_name((unsigned)c->arg0));
            cr_assert_eq(c->sid, ev_last(&evs, CW_EV_OPEN, fd)->sid);
            struct cw_fd_entry e = fd_entry(&r, fd);
            cr_assert_not(entry_open(&e), "fd %d still open in the table", fd);
            cr_assert_neq(e.close_ns, 0);
        }
    }
    /* CLOSE_RANGE_CLOEXEC closes nothing. */
    for (int fd = named(&m, "cloexec_first"); fd <= named(&m, "cloexec_last"); fd++) {
        cr_assert_eq(ev_count(&evs, CW_EV_CLOSE, fd), 0, "fd %d closed by CLOSE_RANGE_CLOEXEC", fd);
        struct cw_fd_entry e = fd_entry(&r, fd);
        cr_assert(entry_open(&e), "fd %d not open in the table", fd);
    }

    /* syscall(SYS_close). */
    int raw = named(&m, "syscall_close");
    int double_fd = named(&m, "double_close");
    cr_assert_eq(raw, double_fd, "the fixture expects fd numbers to be reused");
    const struct cw_event *raw_open = NULL, *raw_close = NULL;
    size_t i = 0;
    for (; i < evs.n && !raw_close; i++) {
        if (evs.v[i].type == CW_EV_OPEN && evs.v[i].fd == raw)
            raw_open = &evs.v[i];
        if (evs.v[i].type == CW_EV_CLOSE && evs.v[i].fd == raw && evs.v[i].arg0 == CW_CLOSE_SYSCALL)
            raw_close = &evs.v[i];
    }
    cr_assert_not_null(raw_close, "syscall(SYS_close) not recorded as how = syscall");
    cr_assert_eq(raw_close->sid, raw_open->sid);

    /* Double close: one close, then a double_close event naming that socket. */
    cr_assert_eq(ev_count(&evs, CW_EV_DOUBLE_CLOSE, ANY_FD), 1);
    const struct cw_event *dbl = ev_last(&evs, CW_EV_DOUBLE_CLOSE, double_fd);
    cr_assert_not_null(dbl, "double close not recorded on fd %d", double_fd);
    const struct cw_event *dbl_open = open_before(&evs, double_fd, index_of(&evs, dbl));
    cr_assert_eq(dbl->sid, dbl_open->sid, "double close names sid %llu, not the closed %llu",
                 (unsigned long long)dbl->sid, (unsigned long long)dbl_open->sid);
    const struct cw_event *first_close = ev_of_sid(&evs, CW_EV_CLOSE, dbl_open->sid);
    cr_assert_not_null(first_close);
    cr_assert_lt(index_of(&evs, first_close), index_of(&evs, dbl));
    cr_assert_eq(first_close->arg0, CW_CLOSE_CLOSE);

    /* Reuse: the last two sockets on that number have distinct, rising sids. */
    int reused = named(&m, "reused");
    const struct cw_event *last_open = ev_last(&evs, CW_EV_OPEN, reused);
    const struct cw_event *prev_open = open_before(&evs, reused, index_of(&evs, last_open));
    cr_assert_not_null(prev_open);
    cr_assert_gt(last_open->sid, prev_open->sid);
    cr_assert_not_null(ev_of_sid(&evs, CW_EV_CLOSE, prev_open->sid), "the first socket was closed");
    struct cw_fd_entry reused_entry = fd_entry(&r, reused);
    cr_assert_eq(entry_sid(&reused_entry), last_open->sid, "the table holds the newest socket");

    /* Every sid appears in exactly one open. */
    for (size_t a = 0; a < evs.n; a++)
        for (size_t b = a + 1; b < evs.n; b++)
            if (evs.v[a].type == CW_EV_OPEN && evs.v[b].type == CW_EV_OPEN)
                cr_assert_neq(evs.v[a].sid, evs.v[b].sid, "sid %llu opened twice",
                              (unsigned long long)evs.v[a].sid);
    /* Open at exit: src, the two dup targets, three copies and the cloexec block. */
    cr_assert_eq(live_hdr(&r)->sockets_open, 9, "sockets_open %u", live_hdr(&r)->sockets_open);
    ev_free(&evs);
    cw_ring_close(&r);
}

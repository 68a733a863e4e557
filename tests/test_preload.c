/*
 * test_preload.c - libclosewatch.so inside real programs: small servers and
 * clients (tests/fixtures) run under the preload against a real peer on
 * 127.0.0.1, and the test checks what their ring recorded. The test is the
 * peer: it connects, sends and closes when the fixture says it is ready, and
 * waits for recorded conditions by polling the ring read-only.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "harness.h"
#include "recorder_util.h"
#include "../common/sock_diag.h"

/* Connects to port, sends a few bytes and closes: the peer's FIN. */
static void connect_send_close(int port)
{
    int fd = h_connect(port);
    cr_assert_eq(write(fd, "hello", 5), 5);
    close(fd);
}

static uint16_t local_port(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    return ntohs(a.sin_port);
}

static uint64_t open_sid_of_accepted(const struct ev_list *evs, int fd)
{
    for (size_t i = evs->n; i-- > 0;) {
        const struct cw_event *e = &evs->v[i];
        if (e->type == CW_EV_OPEN && e->fd == fd && ev_origin(e) == CW_ORIGIN_ACCEPT)
            return e->sid;
    }
    cr_assert_fail("no accept recorded for fd %d", fd);
    return 0;
}

Test(preload, leaky_server_leaves_socket_in_close_wait, .timeout = 30, .fini = drop_test_dir)
{
    char *dir = test_dir("pre-leaky");
    struct h_ctl ctl;
    h_ctl_open(&ctl);
    const char *exe = FIXTURE("leaky_server");
    char *argv[] = {(char *)exe, ctl.arg, NULL};
    /* Sampler off: the CLOSE_WAIT must come from the exit snapshot. */
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=0", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    h_ctl_spawned(&ctl);
    int port = (int)read_value(&p, "port");
    int client = h_connect(port);
    uint16_t client_port = local_port(client);
    cr_assert_eq(write(client, "hello", 5), 5);
    close(client);
    int leaked = (int)read_value(&p, "leaked");
    h_ctl_release(&ctl);
    wait_exit_ok(&p, 10000);

    struct cw_ring r;
    open_ring(&r, dir, p.pid);
    cr_assert_eq(r.hdr.exit_state, CW_EXITED);
    struct cw_fd_entry e = fd_entry(&r, leaked);
    cr_assert(entry_open(&e), "the leaked fd %d is not open at exit", leaked);
    cr_assert_eq(e.origin, CW_ORIGIN_ACCEPT);
    cr_assert(e.flags & CW_FD_CONNECTED);
    cr_assert_eq(e.peer.port, client_port, "peer port %u, the client's was %u", e.peer.port,
                 client_port);
    cr_assert_eq(e.local.port, port);
    cr_assert_neq(e.eof_ns, 0, "the EOF recv() returned was not recorded");
    cr_assert_geq(e.eof_ns, e.open_ns);
    cr_assert_eq(e.eof_count, 1);
    cr_assert_eq(e.close_ns, 0);
    cr_assert_eq(e.tcp_state, CW_TCP_CLOSE_WAIT, "exit snapshot state %s",
                 cw_tcp_state_name(e.tcp_state));
    /* Dated by the kernel (tcpi_last_ack_recv): the FIN came before the
     * read that returned 0, give or take a jiffy, and not before the accept. */
    cr_assert_geq(e.close_wait_ns, e.open_ns, "the exit snapshot dates CLOSE_WAIT");
    cr_assert_leq(e.close_wait_ns, e.eof_ns + 2 * CW_JIFFY_MAX_NS,
                  "CLOSE_WAIT dated %.3f ms after the EOF read",
                  ((double)e.close_wait_ns - (double)e.eof_ns) / 1e6);

    struct ev_list evs;
    ev_collect(&r, &evs);
    const struct cw_event *eof = ev_last(&evs, CW_EV_EOF, leaked);
    cr_assert_not_null(eof);
    cr_assert_eq(eof->arg0, CW_EOF_READ);
    cr_assert_eq(eof->sid, entry_sid(&e));
    cr_assert_eq(eof->stack, e.eof_stack);
    cr_assert_eq(ev_count(&evs, CW_EV_CLOSE, leaked), 0);
    const struct cw_event *state = ev_last(&evs, CW_EV_STATE, leaked);
    cr_assert_not_null(state, "the exit snapshot logged no state change");
    cr_assert_eq(state->arg0, CW_TCP_CLOSE_WAIT);

    /* The EOF backtrace points at the code that dropped the connection. */
    cr_assert_neq(e.eof_stack, 0);
    uint64_t pcs[CW_MAX_DEPTH];
    int depth = cw_ring_stack(&r, e.eof_stack, pcs, CW_MAX_DEPTH);
    cr_assert_gt(depth, 2);
    struct cw_module mod;
    cr_assert(find_module(&r, exe, &mod), "no module entry for %s", exe);
    cr_assert(in_module(&mod, pcs[0]) && in_module(&mod, pcs[1]),
              "top EOF frames 0x%llx 0x%llx are not in the fixture", (unsigned long long)pcs[0],
              (unsigned long long)pcs[1]);
    char name[128];
    symbolize(&mod, pcs[0], name, sizeof name);
    cr_assert_str_eq(name, "serve_until_eof");
    symbolize(&mod, pcs[1], name, sizeof name);
    cr_assert_str_eq(name, "main");
    ev_free(&evs);
    cw_ring_close(&r);
}

struct fd_watch {
    const struct cw_ring *r;
    int fd;
};

static int fd_in_close_wait(void *arg)
{
    const struct fd_watch *w = arg;
    struct cw_fd_entry e;
    /* The sampler writes tcp_state first, close_wait_ns just after. */
    return cw_ring_fd(w->r, (uint32_t)w->fd, &e) && e.tcp_state == CW_TCP_CLOSE_WAIT &&
           e.close_wait_ns != 0;
}

static int sampler_beat(void *arg)
{
    const struct cw_ring *r = arg;
    return live_hdr(r)->heartbeat_mono_ns > r->hdr.start_mono_ns;
}

/* An idle client (connected to address; as nobody if as_nobody) whose
 * server hangs up: no read, so only the sampler can tell. */
static void idle_client_case(const char *tag, char *address, char *as_nobody)
{
    char *dir = test_dir(tag);
    if (as_nobody) {
        cr_assert_eq(chmod(dir, 0711), 0); /* nobody's sampler must reach its ring */
        /* ...and execute the library: a checkout or a TMPDIR under a private
         * directory (/root) keeps nobody out. */
        char lib[4096];
        snprintf(lib, sizeof lib, "%s/libclosewatch.so", h_build());
        pid_t probe = fork();
        if (probe == 0)
            _exit(setgid(65534) || setuid(65534) || access(lib, R_OK | X_OK) != 0 ||
                  access(dir, X_OK) != 0);
        int status = 0;
        cr_assert_eq(waitpid(probe, &status, 0), probe);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            cr_skip_test("user nobody cannot reach %s or %s", lib, dir);
    }
    int port;
    int listener = h_listen(&port);
    char port_arg[16];
    snprintf(port_arg, sizeof port_arg, "%d", port);
    struct h_ctl ctl;
    h_ctl_open(&ctl);
    char *argv[] = {(char *)FIXTURE("idle_client"), port_arg, ctl.arg, address, as_nobody, NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=50", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    h_ctl_spawned(&ctl);
    int fd = (int)read_value(&p, "connected");

    /* The server hangs up; the client never reads, so only the sampler can tell. */
    int served = accept(listener, NULL, NULL);
    cr_assert_geq(served, 0);
    close(served);

    struct cw_ring r;
    open_ring(&r, dir, p.pid);
    struct fd_watch w = {&r, fd};
    cr_assert(h_wait_for(fd_in_close_wait, &w, 10000),
              "the sampler did not mark fd %d CLOSE_WAIT within 10 s", fd);
    struct cw_fd_entry e = fd_entry(&r, fd);
    cr_assert(entry_open(&e));
    cr_assert_eq(e.origin, CW_ORIGIN_SOCKET);
    cr_assert(e.flags & CW_FD_CONNECTED);
    cr_assert_neq(e.close_wait_ns, 0);
    cr_assert_geq(e.close_wait_ns, e.open_ns);
    cr_assert_eq(e.eof_ns, 0, "no read, so no EOF may be recorded");
    cr_assert_eq(e.eof_count, 0);
    cr_assert_eq(live_hdr(&r)->exit_state, CW_RUNNING);
    /* The round that marked the socket stamps its heartbeat after doing so. */
    cr_assert(h_wait_for(sampler_beat, &r, 10000), "the sampler left no heartbeat");

    h_ctl_release(&ctl);
    wait_exit_ok(&p, 10000);
    cr_assert_eq(live_hdr(&r)->exit_state, CW_EXITED);
    struct ev_list evs;
    ev_collect(&r, &evs);
    const struct cw_event *state = ev_last(&evs, CW_EV_STATE, fd);
    cr_assert_not_null(state);
    cr_assert_eq(state->arg0, CW_TCP_CLOSE_WAIT);
    cr_assert_eq(state->sid, entry_sid(&e));
    cr_assert_eq(ev_count(&evs, CW_EV_EOF, ANY_FD), 0);
    ev_free(&evs);
    cw_ring_close(&r);
    close(listener);
}

Test(preload, idle_client_close_wait_found_by_sampler, .timeout = 30, .fini = drop_test_dir)
{
    idle_client_case("pre-idle", NULL, NULL);
}

/* Connected to 0.0.0.0: the kernel made it 127.0.0.1, the recorded peer is
 * the wildcard, so the sampler's lookup by the two ends finds nothing and
 * its dump (by inode) must. */
Test(preload, idle_client_to_the_wildcard_address_found_by_sampler, .timeout = 30,
     .fini = drop_test_dir)
{
    idle_client_case("pre-idle-any", "0.0.0.0", NULL);
}

Test(preload, spinning_on_eof_counts_every_read_logs_one_event, .timeout = 30,
     .fini = drop_test_dir)
{
    char *dir = test_dir("pre-spin");
    char *argv[] = {(char *)FIXTURE("spin_server"), "1000", NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=0", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    connect_send_close((int)read_value(&p, "port"));
    int fd = (int)read_value(&p, "spun");
    wait_exit_ok(&p, 10000);

    struct cw_ring r;
    open_ring(&r, dir, p.pid);
    struct cw_fd_entry e = fd_entry(&r, fd);
    cr_assert_not(entry_open(&e));
    cr_assert_geq(e.eof_count, 1000, "eof_count %u after 1000 read()==0", e.eof_count);
    struct ev_list evs;
    ev_collect(&r, &evs);
    cr_assert_eq(ev_count(&evs, CW_EV_EOF, ANY_FD), 1, "%d EOF events for one connection",
                 ev_count(&evs, CW_EV_EOF, ANY_FD));
    const struct cw_event *close_ev = ev_of_sid(&evs, CW_EV_CLOSE, entry_sid(&e));
    cr_assert_not_null(close_ev);
    cr_assert_eq(close_ev->arg1, (int64_t)e.eof_count, "the close carries the EOF count");
    cr_assert_lt(evs.n, 20, "%zu events: the spin leaked into the ring", evs.n);
    ev_free(&evs);
    cw_ring_close(&r);
}

Test(preload, good_server_closes_every_connection, .timeout = 30, .fini = drop_test_dir)
{
    enum { CONNECTIONS = 20 };
    char *dir = test_dir("pre-good");
    char count[16];
    snprintf(count, sizeof count, "%d", CONNECTIONS);
    char *argv[] = {(char *)FIXTURE("good_server"), count, NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=0", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    int port = (int)read_value(&p, "port");
    for (int i = 0; i < CONNECTIONS; i++)
        connect_send_close(port);
    cr_assert_eq(read_value(&p, "served"), CONNECTIONS);
    wait_exit_ok(&p, 10000);

    struct cw_ring r;
    open_ring(&r, dir, p.pid);
    struct ev_list evs;
    ev_collect(&r, &evs);
    cr_assert_eq(evs.torn, 0);
    int accepted = 0;
    for (size_t i = 0; i < evs.n; i++) {
        const struct cw_event *o = &evs.v[i];
        if (o->type != CW_EV_OPEN || ev_origin(o) != CW_ORIGIN_ACCEPT)
            continue;
        accepted++;
        const struct cw_event *eof = ev_of_sid(&evs, CW_EV_EOF, o->sid);
        const struct cw_event *c = ev_of_sid(&evs, CW_EV_CLOSE, o->sid);
        cr_assert_not_null(eof, "connection sid %llu: no EOF", (unsigned long long)o->sid);
        cr_assert_not_null(c, "connection sid %llu: not closed", (unsigned long long)o->sid);
        cr_assert_eq(c->arg0, CW_CLOSE_CLOSE);
        cr_assert_geq(c->time_ns, eof->time_ns);
        cr_assert_gt(c - evs.v, eof - evs.v, "close logged before the EOF");
    }
    cr_assert_eq(accepted, CONNECTIONS);

    /* The table: only the listener open; the connections closed after their EOF. */
    const struct cw_header *h = live_hdr(&r);
    cr_assert_eq(h->sockets_open, 1, "sockets_open %u", h->sockets_open);
    int open = 0, connections = 0;
    for (uint32_t fd = 0; fd < r.hdr.fd_cap; fd++) {
        struct cw_fd_entry e;
        if (!cw_ring_fd(&r, fd, &e) || !e.sid)
            continue;
        if (entry_open(&e)) {
            open++;
            cr_assert(e.flags & CW_FD_LISTENING, "fd %u open at exit but not the listener", fd);
            cr_assert_eq(e.tcp_state, CW_TCP_LISTEN);
        } else if (e.origin == CW_ORIGIN_ACCEPT) {
            connections++;
            cr_assert_neq(e.eof_ns, 0);
            cr_assert_geq(e.close_ns, e.eof_ns, "fd %u closed before its EOF", fd);
            /* A close's backtrace is taken only when it came too late to be
             * prompt (the one case a report shows it). */
            if (e.close_ns - e.eof_ns > CW_PROMPT_CLOSE_NS)
                cr_assert_neq(e.close_stack, 0, "fd %u: late close without a stack", fd);
            else
                cr_assert_eq(e.close_stack, 0, "fd %u: prompt close with a stack", fd);
        }
    }
    cr_assert_eq(open, 1);
    cr_assert_geq(connections, 1);
    ev_free(&evs);
    cw_ring_close(&r);
}

Test(preload, forking_server_children_get_their_own_rings, .timeout = 30, .fini = drop_test_dir)
{
    enum { CONNECTIONS = 3 };
    char *dir = test_dir("pre-fork");
    char count[16];
    snprintf(count, sizeof count, "%d", CONNECTIONS);
    char *argv[] = {(char *)FIXTURE("forking_server"), count, NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=0", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    int port = (int)read_value(&p, "port");
    pid_t child[CONNECTIONS];
    int child_fd[CONNECTIONS];
    for (int i = 0; i < CONNECTIONS; i++) {
        connect_send_close(port);
        char line[128];
        read_line(&p, line, sizeof line);
        int pid;
        cr_assert(sscanf(line, "child %d %d", &pid, &child_fd[i]) == 2, "bad line \"%s\"", line);
        child[i] = pid;
    }
    cr_assert_eq(read_value(&p, "reaped"), CONNECTIONS);
    wait_exit_ok(&p, 10000);

    char paths[8][512];
    cr_assert_eq(h_rings(dir, 0, paths, 8), CONNECTIONS + 1, "one ring per process");
    for (int i = 0; i < CONNECTIONS; i++) {
        struct cw_ring r;
        open_ring(&r, dir, child[i]);
        cr_assert_eq(r.hdr.ppid, p.pid);
        cr_assert_eq(r.hdr.exit_state, CW_EXITED);
        struct cw_fd_entry e = fd_entry(&r, child_fd[i]);
        cr_assert_eq(e.origin, CW_ORIGIN_INHERITED, "child %d: origin %s", i,
                     cw_origin_name(e.origin));
        cr_assert(e.flags & CW_FD_FROM_FORK);
        cr_assert_not(entry_open(&e), "child %d did not close its connection", i);
        cr_assert_neq(e.close_ns, 0);
        cr_assert_neq(e.eof_ns, 0);
        cr_assert_eq(live_hdr(&r)->sockets_open, 0, "the child closed the listener too");

        struct ev_list evs;
        ev_collect(&r, &evs);
        cr_assert_eq(evs.torn, 0);
        const struct cw_event *o = ev_of_sid(&evs, CW_EV_OPEN, entry_sid(&e));
        const struct cw_event *eof = ev_of_sid(&evs, CW_EV_EOF, entry_sid(&e));
        const struct cw_event *c = ev_of_sid(&evs, CW_EV_CLOSE, entry_sid(&e));
        cr_assert(o && eof && c, "child %d: open %p eof %p close %p", i, (void *)o, (void *)eof,
                  (void *)c);
        cr_assert_eq(ev_origin(o), CW_ORIGIN_INHERITED);
        cr_assert_eq(o->fd, child_fd[i]);
        cr_assert(o < eof && eof < c, "child %d: events out of order", i);
        cr_assert_eq(c->arg0, CW_CLOSE_CLOSE);
        ev_free(&evs);
        cw_ring_close(&r);
    }

    struct cw_ring r;
    open_ring(&r, dir, p.pid);
    struct ev_list evs;
    ev_collect(&r, &evs);
    int accepted = 0;
    for (size_t i = 0; i < evs.n; i++) {
        const struct cw_event *o = &evs.v[i];
        if (o->type != CW_EV_OPEN || ev_origin(o) != CW_ORIGIN_ACCEPT)
            continue;
        accepted++;
        const struct cw_event *c = ev_of_sid(&evs, CW_EV_CLOSE, o->sid);
        cr_assert_not_null(c, "the parent did not close its copy of sid %llu",
                           (unsigned long long)o->sid);
        cr_assert_eq(c->tid, (uint32_t)p.pid);
    }
    cr_assert_eq(accepted, CONNECTIONS);
    cr_assert_eq(ev_count(&evs, CW_EV_EOF, ANY_FD), 0, "the parent never reads");
    cr_assert_eq(live_hdr(&r)->sockets_open, 1, "only the listener");
    ev_free(&evs);
    cw_ring_close(&r);
}

enum { CLIENT_THREADS = 8, CONNECTS_PER_THREAD = 200 };

struct client_job {
    int port;
    int failures;
};

static void *connect_many(void *arg)
{
    struct client_job *job = arg;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)job->port)};
    for (int i = 0; i < CONNECTS_PER_THREAD; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) || write(fd, "x", 1) != 1)
            job->failures++;
        if (fd >= 0)
            close(fd);
    }
    return NULL;
}

Test(preload, threaded_server_under_concurrent_connects, .timeout = 30, .fini = drop_test_dir)
{
    const int total = CLIENT_THREADS * CONNECTS_PER_THREAD;
    char *dir = test_dir("pre-threads");
    char count[16];
    snprintf(count, sizeof count, "%d", total);
    char *argv[] = {(char *)FIXTURE("threaded_server"), count, NULL};
    /* A busy sampler, reconciling with /proc/self/fd while fd numbers churn. */
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=2", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    int port = (int)read_value(&p, "port");

    pthread_t threads[CLIENT_THREADS];
    struct client_job jobs[CLIENT_THREADS];
    for (int i = 0; i < CLIENT_THREADS; i++) {
        jobs[i] = (struct client_job){.port = port};
        cr_assert_eq(pthread_create(&threads[i], NULL, connect_many, &jobs[i]), 0);
    }
    for (int i = 0; i < CLIENT_THREADS; i++) {
        pthread_join(threads[i], NULL);
        cr_assert_eq(jobs[i].failures, 0, "client thread %d: %d failed connections", i,
                     jobs[i].failures);
    }
    cr_assert_eq(read_value(&p, "served"), total);
    wait_exit_ok(&p, 20000);

    struct cw_ring r;
    open_ring(&r, dir, p.pid);
    const struct cw_header *h = live_hdr(&r);
    struct ev_list evs;
    ev_collect(&r, &evs);
    cr_assert_eq(evs.torn, 0, "%llu torn records", (unsigned long long)evs.torn);
    cr_assert_eq(evs.overwritten, 0);
    cr_assert_eq(h->events_dropped, 0);

    /*
     * Per accepted socket: exactly one close by the program's close() hook.
     * A second close event of how "vanished" may accompany it when the
     * socket was seen gone before that hook recorded (the number reused by
     * the next accept, or missing from /proc/self/fd). Events are written
     * after the fd table is updated, without a lock, so that "vanished" may
     * land before or after the hooked close in the ring (the analyzer keeps
     * the hooked one either way); never a second hooked close.
     */
    uint8_t *opened = calloc(h->next_sid + 1, 1), *hooked = calloc(h->next_sid + 1, 1);
    uint8_t *vanished_first = calloc(h->next_sid + 1, 1);
    int accepted = 0, hooked_closes = 0, untracked = 0, vanished = 0;
    uint32_t close_tids[4] = {0};
    int distinct_tids = 0;
    for (size_t i = 0; i < evs.n; i++) {
        const struct cw_event *e = &evs.v[i];
        cr_assert_lt(e->sid, h->next_sid);
        if (e->type == CW_EV_OPEN && ev_origin(e) == CW_ORIGIN_ACCEPT) {
            cr_assert_eq(opened[e->sid], 0, "sid %llu opened twice", (unsigned long long)e->sid);
            opened[e->sid] = 1;
            accepted++;
        }
        if (e->type == CW_EV_OPEN && ev_origin(e) == CW_ORIGIN_UNTRACKED)
            untracked++;
        if (e->type != CW_EV_CLOSE || !opened[e->sid])
            continue;
        if (e->arg0 == CW_CLOSE_VANISHED) {
            cr_assert_eq(vanished_first[e->sid], 0, "sid %llu vanished twice",
                         (unsigned long long)e->sid);
            vanished_first[e->sid] = 1;
            vanished++;
            continue;
        }
        cr_assert_eq(e->arg0, CW_CLOSE_CLOSE, "sid %llu closed how %s", (unsigned long long)e->sid,
                     cw_close_how_name((unsigned)e->arg0));
        cr_assert_eq(hooked[e->sid], 0, "sid %llu closed twice", (unsigned long long)e->sid);
        hooked[e->sid] = 1;
        hooked_closes++;
        cr_assert_neq(e->tid, (uint32_t)p.pid, "a handler thread closes, not the accept loop");
        int known = 0;
        for (int t = 0; t < distinct_tids; t++)
            known |= close_tids[t] == e->tid;
        if (!known && distinct_tids < 4)
            close_tids[distinct_tids++] = e->tid;
    }
    cr_assert_eq(accepted, total, "%d accepts recorded for %d connections", accepted, total);
    cr_assert_eq(hooked_closes, total, "%d of %d connections recorded closed by close()",
                 hooked_closes, total);
    cr_assert_eq(untracked, 0, "the sampler adopted %d sockets as untracked", untracked);
    cr_assert_gt(distinct_tids, 1, "all closes came from one thread");
    cr_assert_eq(h->sockets_open, 1, "sockets_open %u, expected just the listener",
                 h->sockets_open);
    for (uint32_t fd = 0; fd < r.hdr.fd_cap; fd++) {
        struct cw_fd_entry e;
        if (cw_ring_fd(&r, fd, &e) && entry_open(&e))
            cr_assert(e.flags & CW_FD_LISTENING, "fd %u open at exit", fd);
    }
    cr_log_info("threaded_server: %d of %d connections were seen vanished before their close hook",
                vanished, total);
    free(vanished_first);
    free(hooked);
    free(opened);
    ev_free(&evs);
    cw_ring_close(&r);
}

/* epoll_server in one mode: three connections, hung up in a shuffled order. */
static void check_rdhup(const char *mode)
{
    enum { CONNECTIONS = 3 };
    char *dir = test_dir("pre-rdhup");
    char count[16];
    snprintf(count, sizeof count, "%d", CONNECTIONS);
    char *argv[] = {(char *)FIXTURE("epoll_server"), (char *)mode, count, NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=0", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    int port = (int)read_value(&p, "port");
    int clients[CONNECTIONS], served[CONNECTIONS];
    for (int i = 0; i < CONNECTIONS; i++) {
        clients[i] = h_connect(port);
        served[i] = (int)read_value(&p, "accepted");
    }
    const int order[CONNECTIONS] = {1, 2, 0};
    for (int i = 0; i < CONNECTIONS; i++) {
        close(clients[order[i]]);
        cr_assert_eq(read_value(&p, "rdhup"), served[order[i]], "%s: wrong connection hung up",
                     mode);
    }
    expect_line(&p, "done");
    wait_exit_ok(&p, 10000);

    struct cw_ring r;
    open_ring(&r, dir, p.pid);
    struct ev_list evs;
    ev_collect(&r, &evs);
    for (int i = 0; i < CONNECTIONS; i++) {
        int fd = served[i];
        uint64_t sid = open_sid_of_accepted(&evs, fd);
        cr_assert_eq(ev_count(&evs, CW_EV_EOF, fd), 1, "%s: fd %d has %d EOF events", mode, fd,
                     ev_count(&evs, CW_EV_EOF, fd));
        const struct cw_event *eof = ev_last(&evs, CW_EV_EOF, fd);
        cr_assert_eq(eof->sid, sid, "%s: EOF recorded for the wrong socket", mode);
        cr_assert_eq(eof->arg0, CW_EOF_RDHUP, "%s: fd %d EOF how %s", mode, fd,
                     cw_eof_how_name((unsigned)eof->arg0));
        cr_assert_neq(eof->stack, 0);
        const struct cw_event *c = ev_of_sid(&evs, CW_EV_CLOSE, sid);
        cr_assert_not_null(c);
        cr_assert_gt(c - evs.v, eof - evs.v);
        struct cw_fd_entry e = fd_entry(&r, fd);
        cr_assert_eq(entry_sid(&e), sid);
        cr_assert(e.flags & CW_FD_EOF_POLLED, "%s: fd %d not flagged EOF_POLLED", mode, fd);
        cr_assert_neq(e.eof_ns, 0);
        cr_assert_eq(e.eof_count, 0, "no read() returned 0");
    }
    ev_free(&evs);
    cw_ring_close(&r);
}

Test(preload, epoll_rdhup_with_data_ptr, .timeout = 30, .fini = drop_test_dir)
{
    check_rdhup("ptr");
}
Test(preload, epoll_rdhup_with_data_fd, .timeout = 30, .fini = drop_test_dir)
{
    check_rdhup("fd");
}
Test(preload, poll_rdhup, .timeout = 30, .fini = drop_test_dir)
{
    check_rdhup("poll");
}

Test(preload, fortified_reads_record_eof, .timeout = 30, .fini = drop_test_dir)
{
    const char *exe = FIXTURE("fortified_client");
    /* The point of the fixture: glibc's headers routed its reads to the _chk variants. */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "nm -D '%s'", exe);
    FILE *nm = popen(cmd, "r");
    cr_assert_not_null(nm);
    char line[256];
    int read_chk = 0, recv_chk = 0;
    while (fgets(line, sizeof line, nm)) {
        read_chk |= strstr(line, " __read_chk") != NULL;
        recv_chk |= strstr(line, " __recv_chk") != NULL;
    }
    cr_assert_eq(pclose(nm), 0, "nm -D failed");
    cr_assert(read_chk && recv_chk, "fortified_client imports __read_chk %d, __recv_chk %d",
              read_chk, recv_chk);

    char *dir = test_dir("pre-fortify");
    int port;
    int listener = h_listen(&port);
    char port_arg[16];
    snprintf(port_arg, sizeof port_arg, "%d", port);
    char *argv[] = {(char *)exe, port_arg, "64", NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=0", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    for (int i = 0; i < 2; i++) {
        int served = accept(listener, NULL, NULL);
        cr_assert_geq(served, 0);
        cr_assert_eq(write(served, "data", 4), 4);
        close(served);
    }
    read_line(&p, line, sizeof line);
    int by_read, by_recv;
    cr_assert(sscanf(line, "fds %d %d", &by_read, &by_recv) == 2, "bad line \"%s\"", line);
    expect_line(&p, "eof");
    wait_exit_ok(&p, 10000);
    close(listener);

    struct cw_ring r;
    open_ring(&r, dir, p.pid);
    struct ev_list evs;
    ev_collect(&r, &evs);
    const int fds[] = {by_read, by_recv};
    const char *via[] = {"__read_chk", "__recv_chk"};
    for (int i = 0; i < 2; i++) {
        const struct cw_event *eof = ev_last(&evs, CW_EV_EOF, fds[i]);
        cr_assert_not_null(eof, "EOF through %s not recorded", via[i]);
        cr_assert_eq(eof->arg0, CW_EOF_READ);
        struct cw_fd_entry e = fd_entry(&r, fds[i]);
        cr_assert_eq(eof->sid, entry_sid(&e));
        cr_assert_eq(e.eof_count, 1, "%s: eof_count %u", via[i], e.eof_count);
    }
    ev_free(&evs);
    cw_ring_close(&r);
}

Test(preload, scm_rights_socket_recorded_as_received, .timeout = 30, .fini = drop_test_dir)
{
    char *dir = test_dir("pre-scm");
    char *argv[] = {(char *)FIXTURE("scm_rights"), NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=0", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    int port = (int)read_value(&p, "port");
    int sent = (int)read_value(&p, "sent");
    int received = (int)read_value(&p, "received");
    expect_line(&p, "done");
    wait_exit_ok(&p, 10000);

    struct cw_ring r;
    open_ring(&r, dir, p.pid);
    struct ev_list evs;
    ev_collect(&r, &evs);
    const struct cw_event *got = ev_last(&evs, CW_EV_OPEN, received);
    const struct cw_event *orig = ev_last(&evs, CW_EV_OPEN, sent);
    cr_assert_not_null(got, "the received fd %d was not recorded", received);
    cr_assert_not_null(orig);
    cr_assert_eq(ev_origin(got), CW_ORIGIN_RECEIVED, "origin %s",
                 cw_origin_name((unsigned)ev_origin(got)));
    cr_assert_eq(ev_family(got), AF_INET);
    cr_assert_eq(ev_socktype(got), SOCK_STREAM);
    cr_assert_eq(got->arg2, orig->arg2, "received inode %lld, sent %lld", (long long)got->arg2,
                 (long long)orig->arg2);
    cr_assert_neq(got->sid, orig->sid, "a received fd is a socket id of its own");
    struct cw_fd_entry e = fd_entry(&r, received);
    cr_assert_eq(e.origin, CW_ORIGIN_RECEIVED);
    cr_assert(e.flags & CW_FD_CONNECTED);
    cr_assert_eq(e.peer.port, port, "the received socket's peer is the listener's port");
    cr_assert_not_null(ev_of_sid(&evs, CW_EV_CLOSE, got->sid), "its close was recorded");
    ev_free(&evs);
    cw_ring_close(&r);
}

Test(preload, emfile_recorded_as_error_events, .timeout = 30, .fini = drop_test_dir)
{
    char *dir = test_dir("pre-emfile");
    char *argv[] = {(char *)FIXTURE("emfile"), NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=0", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    int open_when_full = (int)read_value(&p, "open");
    expect_line(&p, "failed socket");
    expect_line(&p, "failed accept");
    expect_line(&p, "failed dup");
    expect_line(&p, "failed socketpair");
    expect_line(&p, "done");
    wait_exit_ok(&p, 10000);

    struct cw_ring r;
    open_ring(&r, dir, p.pid);
    struct ev_list evs;
    ev_collect(&r, &evs);
    const struct {
        int call;
        int sockets_open;
    } want[] = {
        {CW_CALL_SOCKET, open_when_full},
        {CW_CALL_ACCEPT, open_when_full},
        {CW_CALL_DUP, open_when_full},
        {CW_CALL_SOCKETPAIR, open_when_full - 1},
    };
    cr_assert_eq(ev_count(&evs, CW_EV_ERROR, ANY_FD), 4);
    int next = 0;
    for (size_t i = 0; i < evs.n; i++) {
        const struct cw_event *e = &evs.v[i];
        if (e->type != CW_EV_ERROR)
            continue;
        cr_assert_eq(e->arg0, EMFILE, "error %d: errno %lld", next, (long long)e->arg0);
        cr_assert_eq(e->arg1, want[next].call, "error %d: call %lld", next, (long long)e->arg1);
        cr_assert_eq(e->arg2, want[next].sockets_open, "error %d: %lld sockets open, expected %d",
                     next, (long long)e->arg2, want[next].sockets_open);
        cr_assert_eq(e->fd, -1);
        cr_assert_neq(e->stack, 0);
        next++;
    }
    cr_assert_eq(live_hdr(&r)->sockets_open, 0);
    ev_free(&evs);
    cw_ring_close(&r);
}

/* All of a fixture's stdout. */
static void read_all(struct h_proc *p, char *out, size_t len)
{
    size_t n = 0;
    char line[4096];
    out[0] = 0;
    while (h_read_line(p, line, sizeof line, 10000))
        n += (size_t)snprintf(out + n, len - n, "%s\n", line);
    cr_assert_lt(n, len);
}

/* Splits fd_listing's output: the last line ("high: ...") goes to high. */
static void split_high(char *out, char *high, size_t len)
{
    char *h = strstr(out, "high:");
    cr_assert_not_null(h, "no high: line in\n%s", out);
    snprintf(high, len, "%s", h);
    high[strcspn(high, "\n")] = 0;
    *h = 0;
}

Test(preload, invisible_to_the_program_no_fds_no_output, .timeout = 30, .fini = drop_test_dir)
{
    char *dir = test_dir("pre-invisible");
    char *argv[] = {(char *)FIXTURE("fd_listing"), NULL};
    static char with[16384], without[16384];
    char high_with[1024], high_without[1024];

    struct h_proc bare = h_spawn(argv, NULL, 0, NULL, 1);
    read_all(&bare, without, sizeof without);
    wait_exit_ok(&bare, 10000);

    struct h_proc traced = spawn_fixture(argv, NULL, dir);
    read_all(&traced, with, sizeof with);
    wait_exit_ok(&traced, 10000);

    split_high(without, high_without, sizeof high_without);
    split_high(with, high_with, sizeof high_with);
    cr_assert(strstr(without, "\nextra:\n"), "the fixture itself is broken:\n%s", without);
    cr_assert(strstr(with, "\nextra:\n"), "fds the program did not open appeared:\n%s", with);
    /* The same fd numbers, the same lines: nothing of ours among the
     * program's fds and nothing of ours on its stdout. */
    cr_assert_str_eq(with, without, "output differs under the preload");

    /* At the top of the fd range, only libunwind's pipe, parked, close-on-exec. */
    cr_assert_str_eq(high_without, "high:", "this environment already has fds at the top");
    int parked = 0;
    for (char *tok = strtok(high_with + 5, " "); tok; tok = strtok(NULL, " ")) {
        parked++;
        cr_assert(strstr(tok, ":pipe:cloexec"), "unexpected fd at the top of the range: %s", tok);
    }
    cr_assert_leq(parked, 2, "%d fds parked at the top: %s", parked, high_with);

    /* And the preload really was there. */
    struct cw_ring r;
    open_ring(&r, dir, traced.pid);
    cr_assert_gt(live_hdr(&r)->write_idx, 5);
    cw_ring_close(&r);
}

/* Children that skip fork handlers (clone with or without CLONE_VM, a raw
 * fork system call, _Fork), each as the program's first: what they close
 * and open is theirs, not the parent's. */
Test(preload, unforked_children_leave_the_parent_ring_intact, .timeout = 30, .fini = drop_test_dir)
{
    static const char *const modes[] = {"clone-vm", "clone-copy", "raw-fork", "_Fork"};
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        char *dir = test_dir("pre-unforked");
        char *argv[] = {(char *)FIXTURE("vfork_exec"), (char *)modes[m], NULL};
        char *env[] = {"CLOSEWATCH_SAMPLE_MS=0", NULL};
        struct h_proc p = spawn_fixture(argv, env, dir);
        char line[256];
        int fds[5];
        read_line(&p, line, sizeof line);
        cr_assert(sscanf(line, "sockets %d %d %d %d %d", &fds[0], &fds[1], &fds[2], &fds[3],
                         &fds[4]) == 5,
                  "bad line \"%s\"", line);
        expect_line(&p, "ok");
        wait_exit_ok(&p, 10000);

        struct cw_ring r;
        open_ring(&r, dir, p.pid);
        struct ev_list evs;
        ev_collect(&r, &evs);
        cr_assert_eq(ev_count(&evs, CW_EV_CLOSE, ANY_FD), 0,
                     "%s: the child's close() was recorded in the parent", modes[m]);
        cr_assert_eq(ev_count(&evs, CW_EV_OPEN, ANY_FD), 5,
                     "%s: the child's socket() was recorded in the parent", modes[m]);
        for (int i = 0; i < 5; i++) {
            struct cw_fd_entry e = fd_entry(&r, fds[i]);
            cr_assert(entry_open(&e), "%s: fd %d closed in the parent's table", modes[m], fds[i]);
        }
        ev_free(&evs);
        cw_ring_close(&r);
        drop_test_dir();
    }
}

Test(preload, vfork_children_leave_the_parent_ring_intact, .timeout = 30, .fini = drop_test_dir)
{
    char *dir = test_dir("pre-vfork");
    char *argv[] = {(char *)FIXTURE("vfork_exec"), NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=0", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    char line[256];
    int fds[5];
    read_line(&p, line, sizeof line);
    cr_assert(sscanf(line, "sockets %d %d %d %d %d", &fds[0], &fds[1], &fds[2], &fds[3], &fds[4]) ==
                  5,
              "bad line \"%s\"", line);
    int vfork_exec_pid = (int)read_value(&p, "vfork_exec");
    int spawned_pid = (int)read_value(&p, "posix_spawn");
    expect_line(&p, "ok");
    wait_exit_ok(&p, 10000);

    struct cw_ring r;
    open_ring(&r, dir, p.pid);
    cr_assert_eq(r.hdr.exit_state, CW_EXITED);
    struct ev_list evs;
    ev_collect(&r, &evs);
    cr_assert_eq(evs.torn, 0);
    cr_assert_eq(ev_count(&evs, CW_EV_CLOSE, ANY_FD), 0,
                 "a vfork child's close_range was recorded in the parent");
    cr_assert_eq(live_hdr(&r)->sockets_open, 5);
    for (int i = 0; i < 5; i++) {
        struct cw_fd_entry e = fd_entry(&r, fds[i]);
        cr_assert(entry_open(&e), "fd %d closed in the parent's table", fds[i]);
        cr_assert_eq(e.close_ns, 0);
        cr_assert_eq(e.open_tid, (uint32_t)p.pid);
    }
    ev_free(&evs);
    cw_ring_close(&r);

    /* The vfork child closed everything before exec: /bin/true never saw a
     * socket and left no ring. The posix_spawn child inherited the five. */
    char paths[4][512];
    cr_assert_eq(h_rings(dir, vfork_exec_pid, paths, 4), 0);
    struct cw_ring child;
    open_ring(&child, dir, spawned_pid);
    cr_assert_eq(child.hdr.exit_state, CW_EXITED);
    cr_assert_eq(child.hdr.ppid, p.pid);
    int inherited = 0;
    for (int i = 0; i < 5; i++) {
        struct cw_fd_entry e = fd_entry(&child, fds[i]);
        inherited += entry_open(&e) && e.origin == CW_ORIGIN_INHERITED;
    }
    cr_assert_eq(inherited, 5, "%d of 5 sockets recorded inherited by the spawned child",
                 inherited);
    cw_ring_close(&child);
}

/* many_fds COUNT [--cap]: opens and closes COUNT sockets. */
static void check_many_fds(const char *count, int cap)
{
    char *dir = test_dir("pre-manyfds");
    char *argv[] = {(char *)FIXTURE("many_fds"), (char *)count, cap ? "--cap" : NULL, NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=0", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    char line[256];
    read_line(&p, line, sizeof line);
    if (!strncmp(line, "skip", 4)) {
        wait_exit_ok(&p, 10000);
        drop_test_dir(); /* a skip does not run .fini */
        cr_skip("%s", line);
    }
    int opened, maxfd;
    cr_assert(sscanf(line, "opened %d %d", &opened, &maxfd) == 2, "bad line \"%s\"", line);
    cr_assert_eq(read_value(&p, "closed"), opened);
    wait_exit_ok(&p, 25000);
    cr_assert_geq(maxfd, opened, "fd numbers below the socket count");

    struct cw_ring r;
    open_ring(&r, dir, p.pid);
    const struct cw_header *h = live_hdr(&r);
    cr_assert_eq(h->sockets_open, 0, "sockets_open %u after closing all", h->sockets_open);
    cr_assert_eq(h->fds_beyond_table, 0);
    cr_assert_eq(h->events_dropped, 0);
    cr_assert_eq(h->next_sid, (uint64_t)opened + 1);
    cr_assert_eq(h->write_idx, (uint64_t)opened * 2, "%llu events for %d opens and closes",
                 (unsigned long long)h->write_idx, opened);
    struct cw_fd_entry top = fd_entry(&r, maxfd);
    cr_assert_neq(top.sid, 0, "the highest fd %d was never recorded", maxfd);
    cr_assert_not(entry_open(&top));
    cr_assert_eq(top.origin, CW_ORIGIN_SOCKETPAIR);
    cw_ring_close(&r);
}

Test(preload, hundred_thousand_sockets, .timeout = 30, .fini = drop_test_dir)
{
    check_many_fds("100000", 0);
}

/* Where 100000 is not allowed, as many as the hard limit permits. */
Test(preload, sockets_up_to_the_fd_limit, .timeout = 30, .fini = drop_test_dir)
{
    check_many_fds("100000", 1);
}

/* The sampler of the ring of pid's image_seq-th image, once recorded. */
static pid_t sampler_of(const char *dir, pid_t pid, int image)
{
    char paths[4][512];
    cr_assert_gt(h_rings(dir, pid, paths, 4), image, "no ring for image %d of pid %d", image,
                 (int)pid);
    struct cw_ring r;
    char err[256];
    cr_assert_eq(cw_ring_open(&r, paths[image], err, sizeof err), 0, "%s", err);
    pid_t s = live_hdr(&r)->sampler_pid;
    cw_ring_close(&r);
    return s;
}

static int process_gone(void *pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d", (int)(intptr_t)pid);
    return access(path, F_OK) != 0;
}

/* The links of pid's fds, "fd=link\n" each, in buf. Fds that close while
 * we look are skipped. */
static void fd_links(pid_t pid, char *buf, size_t len)
{
    char path[320];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    cr_assert_not_null(d, "%s: %s", path, strerror(errno));
    size_t n = 0;
    buf[0] = 0;
    for (struct dirent *e; (e = readdir(d));) {
        char link[256];
        snprintf(path, sizeof path, "/proc/%d/fd/%s", (int)pid, e->d_name);
        ssize_t l = e->d_name[0] == '.' ? -1 : readlink(path, link, sizeof link - 1);
        if (l <= 0)
            continue;
        link[l] = 0;
        n += (size_t)snprintf(buf + n, len - n, "%s\n", link);
        cr_assert_lt(n, len);
    }
    closedir(d);
}

static int sampler_settled(void *arg)
{
    char path[64], cwd[64] = "", in[64] = "";
    snprintf(path, sizeof path, "/proc/%d/cwd", (int)(intptr_t)arg);
    if (readlink(path, cwd, sizeof cwd - 1) < 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%d/fd/0", (int)(intptr_t)arg);
    if (readlink(path, in, sizeof in - 1) < 0)
        return 0;
    return !strcmp(cwd, "/") && !strcmp(in, "/dev/null");
}

/* Checks that pid is a sampler process watching program, outside its tree,
 * holding none of its sockets. */
static void expect_sampler(pid_t pid, pid_t program)
{
    char path[320], *buf;
    size_t len;
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    buf = h_slurp(path, &len);
    cr_assert_not_null(buf, "sampler %d is not running", (int)pid);
    cr_assert_str_eq(buf, "closewatch-sampler", "pid %d is not a sampler", (int)pid);
    free(buf);
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    buf = h_slurp(path, &len);
    const char *ppid = buf ? strstr(buf, "\nPPid:") : NULL;
    cr_assert_not_null(ppid);
    cr_assert_neq(atoi(ppid + 6), (int)program, "the sampler is the program's child");
    free(buf);

    /* Once started: out of the program's cwd, 0-2 on /dev/null. */
    cr_assert(h_wait_for(sampler_settled, (void *)(intptr_t)pid, 10000),
              "sampler %d: cwd not / or fd 0 not /dev/null", (int)pid);

    static char theirs[16384], ours[16384];
    fd_links(program, theirs, sizeof theirs);
    fd_links(pid, ours, sizeof ours);
    cr_assert(strstr(theirs, "socket:["), "the program has no sockets:\n%s", theirs);
    for (char *l = strtok(theirs, "\n"); l; l = strtok(NULL, "\n"))
        if (!strncmp(l, "socket:[", 8))
            cr_assert_null(strstr(ours, l), "the sampler holds the program's %s", l);
}

/* The sampler is a process, but the program must not notice it: still one
 * thread, no child for wait(), no SIGCHLD, across an exec too; the old
 * image's sampler leaves with it. */
Test(preload, sampler_process_is_invisible_to_the_program, .timeout = 30, .fini = drop_test_dir)
{
    char *dir = test_dir("pre-sampler");
    struct h_ctl to_exec, to_exit;
    h_ctl_open(&to_exec);
    h_ctl_open(&to_exit);
    char *argv[] = {(char *)FIXTURE("sampler_visibility"), to_exec.arg, to_exit.arg, NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=50", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    h_ctl_spawned(&to_exec);
    h_ctl_spawned(&to_exit);

    for (int image = 0; image < 2; image++) {
        expect_line(&p, "threads 1");
        expect_line(&p, "wait -1 ECHILD");
        expect_line(&p, "children []");
        pid_t sampler = sampler_of(dir, p.pid, image);
        cr_assert_gt(sampler, 0, "image %d: no sampler started", image);
        expect_sampler(sampler, p.pid);
        if (image == 0)
            h_ctl_release(&to_exec);
        else
            h_ctl_release(&to_exit);
        expect_line(&p, "sigchld 0");
        cr_assert(h_wait_for(process_gone, (void *)(intptr_t)sampler, 10000),
                  "image %d's sampler %d outlived it", image, (int)sampler);
    }
    wait_exit_ok(&p, 10000);
}

/* An exec into an image without the preload: the old image's sampler
 * leaves at once, while the process runs on. */
Test(preload, sampler_leaves_when_the_program_execs_untraced, .timeout = 30, .fini = drop_test_dir)
{
    char *dir = test_dir("pre-untraced");
    struct h_ctl to_exec, to_exit;
    h_ctl_open(&to_exec);
    h_ctl_open(&to_exit);
    char *argv[] = {(char *)FIXTURE("sampler_visibility"), to_exec.arg, to_exit.arg, "untraced",
                    NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=50", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    h_ctl_spawned(&to_exec);
    h_ctl_spawned(&to_exit);
    expect_line(&p, "threads 1");
    expect_line(&p, "wait -1 ECHILD");
    expect_line(&p, "children []");
    pid_t sampler = sampler_of(dir, p.pid, 0);
    cr_assert_gt(sampler, 0);
    h_ctl_release(&to_exec);
    expect_line(&p, "sigchld 0");
    expect_line(&p, "threads 1"); /* the untraced image is running */
    cr_assert(h_wait_for(process_gone, (void *)(intptr_t)sampler, 10000),
              "the sampler %d stayed after the exec", (int)sampler);
    char paths[4][512];
    cr_assert_eq(h_rings(dir, p.pid, paths, 4), 1, "the untraced image made a ring");
    h_ctl_release(&to_exit);
    wait_exit_ok(&p, 10000);
}

/* A root program that drops to nobody before its first TCP socket: its
 * sampler runs as nobody, on a ring root created, for a process that is no
 * longer dumpable. The socket it never reads must still be found. */
Test(preload, sampler_works_after_the_program_drops_privileges, .timeout = 30,
     .fini = drop_test_dir)
{
    if (geteuid() != 0)
        cr_skip_test("needs root, to drop privileges from");
    idle_client_case("pre-setuid", "127.0.0.1", "nobody");
}

/* Adopted: published only once described (addresses, CONNECTED), so the
 * test reads the entry as soon as it is open. */
static int fd_adopted_untracked(void *arg)
{
    struct fd_watch *w = arg;
    struct cw_fd_entry e = fd_entry(w->r, w->fd);
    return entry_open(&e) && e.origin == CW_ORIGIN_UNTRACKED;
}

/* A TCP socket made with raw system calls (as Go does) is adopted from what
 * sock_diag says about its inode, with its addresses, and its CLOSE_WAIT
 * found, without the sampler ever holding a copy of it: here under a policy
 * that refuses pidfd_getfd (Docker's without CAP_SYS_PTRACE; Yama's
 * ptrace_scope 1 too), which the sampler inherits. */
Test(preload, untracked_socket_adopted_from_sock_diag, .timeout = 40, .fini = drop_test_dir)
{
#if !defined(__x86_64__)
    cr_skip_test("the fixture makes its raw system calls in x86-64 assembly");
#endif
    char *dir = test_dir("pre-denied");
    int port;
    int listener = h_listen(&port);
    char port_arg[16];
    snprintf(port_arg, sizeof port_arg, "%d", port);
    struct h_ctl ctl;
    h_ctl_open(&ctl);
    char *argv[] = {(char *)FIXTURE("denied_getfd"), port_arg, ctl.arg, NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=50", NULL};
    struct h_proc p = spawn_fixture(argv, env, dir);
    h_ctl_spawned(&ctl);
    int fd = (int)read_value(&p, "connected");
    int served = accept(listener, NULL, NULL);
    cr_assert_geq(served, 0);

    struct cw_ring r;
    open_ring(&r, dir, p.pid);
    struct fd_watch w = {&r, fd};
    /* Two reconciliations, 0.5 s apart at least, every fifth round. */
    cr_assert(h_wait_for(fd_adopted_untracked, &w, 20000),
              "the sampler did not adopt the raw socket fd %d", fd);
    struct cw_fd_entry e = fd_entry(&r, fd);
    cr_assert_eq(e.family, AF_INET);
    cr_assert_eq(e.type, SOCK_STREAM);
    cr_assert(e.flags & CW_FD_CONNECTED);
    cr_assert_eq(e.peer.port, port, "peer port %u, expected %d", e.peer.port, port);
    cr_assert_neq(e.inode, 0);

    close(served); /* the peer's FIN: CLOSE_WAIT, seen by a dump this time */
    cr_assert(h_wait_for(fd_in_close_wait, &w, 10000), "the sampler did not mark fd %d CLOSE_WAIT",
              fd);
    h_ctl_release(&ctl);
    wait_exit_ok(&p, 10000);
    cw_ring_close(&r);
    close(listener);
}

/*
 * test_bpf.c - the kernel-side recorder (bpf/) under `closewatch run
 * --recorder=bpf`: real programs the preload cannot see into (a static Go
 * server, a static C client) over loopback, their findings with stacks.
 * Needs root and a kernel that takes the programs: elsewhere each test
 * skips, saying which.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <netinet/in.h>
#include <unistd.h>

#include "harness.h"
#include "jsonq.h"

#define COND_MS      20000
#define RUN_GRACE_NS 300000000ull /* the grace the runs here use, at most */

static const char *src_path(const char *rel)
{
    static char out[1200];
    const char *src = getenv("CW_SRC");
    snprintf(out, sizeof out, "%s/%s", src && *src ? src : h_path(".."), rel);
    return out;
}

/* Skips unless this process may load BPF programs and the kernel takes
 * closewatch's (what closewatch itself says when it refuses). */
static void need_bpf(void)
{
    if (geteuid() != 0)
        cr_skip("the bpf recorder needs root (CAP_BPF and CAP_PERFMON); running as uid %d",
                (int)geteuid());
    char cmd[1400], line[512] = "";
    snprintf(cmd, sizeof cmd, "'%s' run --recorder=bpf -- /bin/true 2>&1", h_path("closewatch"));
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    int refused = 0;
    while (fgets(line, sizeof line, p))
        if (strstr(line, "refused the bpf recorder")) {
            refused = 1;
            break;
        }
    pclose(p);
    if (refused) {
        fprintf(stderr, "test_bpf: skipped: %s", line);
        cr_skip("%s", line);
    }
}

static int run_cmd(char *const argv[], char *const env[], const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; env && env[i]; i++)
            putenv(env[i]);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* tests/real/goserver, static (no cgo), in tmp. */
/* tests/real/NAME/main.go, static (no cgo), built in tmp as tmp/NAME with
 * linker flags ldflags ("-s -w": no DWARF, no symbol table). */
static void build_go(const char *tmp, const char *name, const char *ldflags, char *exe, size_t len)
{
    if (system("command -v go >/dev/null") != 0)
        cr_skip("go is not installed (scripts/install-test-deps.sh go)");
    char log[600], cache[600], gopath[600], home[600], src[200];
    snprintf(exe, len, "%s/%s", tmp, name);
    snprintf(log, sizeof log, "%s/go.log", tmp);
    snprintf(cache, sizeof cache, "GOCACHE=%s/cache", tmp);
    snprintf(gopath, sizeof gopath, "GOPATH=%s/gopath", tmp);
    snprintf(home, sizeof home, "HOME=%s", tmp);
    snprintf(src, sizeof src, "tests/real/%s/main.go", name);
    char *env[] = {cache, gopath, home, "GO111MODULE=off", "GOFLAGS=", "CGO_ENABLED=0", NULL};
    char *argv[] = {"go", "build", "-ldflags", (char *)ldflags, "-o", exe, (char *)src_path(src),
                    NULL};
    cr_assert_eq(run_cmd(argv, env, log), 0, "go build failed:\n%s", h_slurp(log, NULL));
}

/* closewatch run --recorder=bpf --format=json -o REPORT -- argv, with the
 * program's stdin and stdout on pipes. */
struct run {
    pid_t cw;
    int in_wr;
    struct h_proc out;
    char report[600];
};

static void run_start(struct run *r, const char *tmp, double grace, char *const argv[])
{
    snprintf(r->report, sizeof r->report, "%s/report.json", tmp);
    char outarg[700], gracearg[64], dirarg[700];
    snprintf(outarg, sizeof outarg, "--output=%s", r->report);
    snprintf(gracearg, sizeof gracearg, "--grace=%g", grace);
    cr_assert_leq(grace * 1e9, RUN_GRACE_NS, "run_settled waits for RUN_GRACE_NS");
    snprintf(dirarg, sizeof dirarg, "--dir=%s", tmp);
    char *full[32] = {(char *)h_path("closewatch"),
                      "run",
                      "--recorder=bpf",
                      "--format=json",
                      outarg,
                      gracearg,
                      dirarg,
                      "--keep",
                      "--"};
    int n = 9;
    for (int i = 0; argv[i] && n < 31; i++)
        full[n++] = argv[i];
    full[n] = NULL;
    int in[2], out[2];
    cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    r->cw = fork();
    cr_assert_neq(r->cw, -1);
    if (r->cw == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(in[0], 0);
        dup2(out[1], 1);
        setenv("CLOSEWATCH_SAMPLE_MS", "50", 1);
        unsetenv("LD_PRELOAD");
        execv(full[0], full);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    r->in_wr = in[1];
    r->out = (struct h_proc){.pid = r->cw, .out_fd = out[0]};
}

/* What the rings of a run in tmp (tmp/closewatch-run-*) show: want > 0,
 * that many connected sockets open whose peer's FIN, as the ring dates it,
 * is older than the run's grace (the report will flag them); want 0, no
 * connected socket open at all (none could be flagged). */
struct settled {
    const char *tmp;
    int want;
};

static int run_settled(void *arg)
{
    const struct settled *w = arg;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    uint64_t now_ns = (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
    int open = 0, past = 0;
    DIR *d = opendir(w->tmp);
    for (struct dirent *de; d && (de = readdir(d));) {
        char dir[1100], paths[16][512];
        if (strncmp(de->d_name, "closewatch-run-", 15))
            continue;
        snprintf(dir, sizeof dir, "%s/%s", w->tmp, de->d_name);
        for (int i = 0, n = h_rings(dir, 0, paths, 16); i < n; i++) {
            struct cw_ring r;
            char err[512];
            if (cw_ring_open(&r, paths[i], err, sizeof err) != CW_RING_OK)
                continue;
            for (uint32_t fd = 0; fd < r.hdr.fd_cap && fd < 1024; fd++) {
                struct cw_fd_entry e;
                if (!cw_ring_fd(&r, fd, &e) || !(e.sid & CW_SID_OPEN) ||
                    !(e.flags & CW_FD_CONNECTED))
                    continue;
                uint64_t fin = cw_peer_fin_ns(e.eof_ns, e.close_wait_ns);
                open++;
                past += fin && now_ns > fin + RUN_GRACE_NS;
            }
            cw_ring_close(&r);
        }
    }
    if (d)
        closedir(d);
    return w->want ? past >= w->want : open == 0;
}

/* Waits until the run in tmp has settled as want says (run_settled). */
static void await_settled(const char *tmp, int want)
{
    struct settled w = {tmp, want};
    int ok = h_wait_for(run_settled, &w, COND_MS);
    if (want)
        cr_assert(ok, "the rings never showed %d sockets in CLOSE_WAIT past the grace", want);
    else
        cr_assert(ok, "the rings still show connected sockets open");
}

/* Ends the program's stdin, waits for closewatch and parses its report. */
static struct jv *run_finish(struct run *r, int end_input)
{
    if (end_input)
        close(r->in_wr);
    int st;
    cr_assert_eq(waitpid(r->cw, &st, 0), r->cw);
    if (!end_input)
        close(r->in_wr);
    close(r->out.out_fd);
    char *text = h_slurp(r->report, NULL);
    cr_assert_not_null(text, "no report written");
    struct jv *doc = jq_parse(text, NULL, 0);
    cr_assert_not_null(doc, "%s", text);
    free(text);
    return doc;
}

/* The program closewatch runs (its only child besides samplers: the first). */
static pid_t program_pid(pid_t cw)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)cw, (int)cw);
    char *kids = h_slurp(path, NULL);
    pid_t pid = kids ? atoi(kids) : 0;
    free(kids);
    return pid;
}

/* Sockets with local port `port` in CLOSE_WAIT (state 08) in /proc/net/tcp. */
struct cw_count {
    int port, want;
};

static int close_wait_at(void *arg)
{
    struct cw_count *c = arg;
    char *t = h_slurp("/proc/net/tcp", NULL);
    int n = 0;
    for (char *l = t ? strchr(t, '\n') : NULL; l && *++l; l = strchr(l, '\n')) {
        unsigned lport, st;
        if (sscanf(l, " %*d: %*x:%x %*x:%*x %x", &lport, &st) == 2 && (int)lport == c->port &&
            st == 8)
            n++;
        if (!strchr(l, '\n'))
            break;
    }
    free(t);
    return n >= c->want;
}

/* Whether finding i's stack (open, eof) has a main.* frame at main.go:line. */
static int main_frame_at(struct jv *doc, int i, const char *stack, int line)
{
    char p[128];
    snprintf(p, sizeof p, "findings.%d.stacks.%s", i, stack);
    for (int k = 0; k < jq_len(doc, p); k++) {
        char fp[160], lp[160], fnp[160];
        snprintf(fp, sizeof fp, "findings.%d.stacks.%s.%d.file", i, stack, k);
        snprintf(lp, sizeof lp, "findings.%d.stacks.%s.%d.line", i, stack, k);
        snprintf(fnp, sizeof fnp, "findings.%d.stacks.%s.%d.function", i, stack, k);
        const char *file = jq_str(doc, fp), *fn = jq_str(doc, fnp);
        if (file && fn && !strncmp(fn, "main.", 5) && strstr(file, "/main.go") &&
            (int)jq_num(doc, lp) == line)
            return 1;
    }
    return 0;
}

/* Every finding is close_wait with its open stack naming main.* in main.go
 * at the Accept line, and the EOF seen (io.Copy's splice returned 0) at the
 * io.Copy line. */
static void expect_go_findings(struct jv *doc, int want, const char *what)
{
    const char *src = src_path("tests/real/goserver/main.go");
    int accept_line = h_marker_line(src, "MARK-ACCEPT");
    int copy_line = h_marker_line(src, "MARK-COPY");
    int n = jq_len(doc, "findings");
    cr_assert_eq(n, want, "%s: %d findings, expected %d", what, n, want);
    for (int i = 0; i < n; i++) {
        char p[128];
        snprintf(p, sizeof p, "findings.%d.kind", i);
        cr_assert_str_eq(jq_str(doc, p), "close_wait", "%s", what);
        snprintf(p, sizeof p, "findings.%d.eof", i);
        cr_assert_str_eq(jq_str(doc, p), "observed", "%s (io.Copy's splice returned 0)", what);
        cr_assert(main_frame_at(doc, i, "open", accept_line),
                  "%s: finding %d has no main.* frame at main.go:%d", what, i, accept_line);
        cr_assert(main_frame_at(doc, i, "eof", copy_line),
                  "%s: finding %d's EOF stack has no main.* frame at main.go:%d", what, i,
                  copy_line);
    }
}

/* The port of the goserver's "listening PORT" line on out. */
static int listening_port(struct h_proc *out)
{
    char line[128];
    cr_assert(h_read_line(out, line, sizeof line, COND_MS), "no 'listening' line");
    int port = 0;
    cr_assert_eq(sscanf(line, "listening %d", &port), 1, "%s", line);
    return port;
}

/* The goserver in mode (leak, good), built with ldflags in a new temporary
 * directory (returned), under closewatch run --recorder=bpf with a 0.3 s
 * grace. */
static char *go_server_run(struct run *r, const char *tag, const char *mode, const char *ldflags,
                           int *port)
{
    need_bpf();
    char *tmp = h_mkdtemp(tag);
    char exe[600];
    build_go(tmp, "goserver", ldflags, exe, sizeof exe);
    char *argv[] = {exe, (char *)mode, NULL};
    run_start(r, tmp, 0.3, argv);
    *port = listening_port(&r->out);
    return tmp;
}

static void go_server(const char *mode, int sockets, int sigkill)
{
    struct run r;
    int port;
    char *tmp = go_server_run(&r, "bpf-go", mode, "", &port);
    for (int i = 0; i < sockets; i++)
        h_echo_session(port, 0);
    struct cw_count c = {port, sockets};
    if (!strcmp(mode, "leak"))
        cr_assert(h_wait_for(close_wait_at, &c, COND_MS), "the kernel never showed %d CLOSE_WAIT",
                  sockets);
    await_settled(tmp, !strcmp(mode, "leak") ? sockets : 0);
    if (sigkill) {
        pid_t prog = program_pid(r.cw);
        cr_assert_gt(prog, 0);
        cr_assert_eq(kill(prog, SIGKILL), 0);
    }
    struct jv *doc = run_finish(&r, !sigkill);
    expect_go_findings(doc, !strcmp(mode, "leak") ? sockets : 0, mode);
    jq_free(doc);
    h_rmdir(tmp);
}

Test(bpf, go_server_leak_is_close_wait_opened_at_its_accept_line, .timeout = 120)
{
    go_server("leak", 3, 0);
}

Test(bpf, go_server_closing_its_connections_has_no_findings, .timeout = 120)
{
    go_server("good", 3, 0);
}

Test(bpf, go_server_killed_by_sigkill_is_reported_from_its_ring, .timeout = 120)
{
    go_server("leak", 3, 1);
}

/* ---- an HTTP client that never closes its response bodies ------------------ */

#define GOCLIENT_REQUESTS 3 /* per call site */

/* tests/real/goclient, static, in tmp; with no_symtab, its .symtab removed
 * (DWARF kept: frames still have names), so the recorder cannot probe it. */
static void build_goclient(const char *tmp, int no_symtab, char *exe, size_t len)
{
    build_go(tmp, "goclient", "", exe, len);
    char log[600];
    snprintf(log, sizeof log, "%s/strip.log", tmp);
    char *strip[] = {"objcopy", "--strip-all", "--keep-section=.debug_*", exe, NULL};
    if (no_symtab && run_cmd(strip, NULL, log) != 0)
        cr_skip("objcopy cannot strip the symbol table: %s", h_slurp(log, NULL));
}

/* Client sockets whose peer is port a or b, in state st (hex as in
 * /proc/net/tcp; 0: ESTABLISHED or CLOSE_WAIT), compared with want. */
struct peer_count {
    int a, b, st, want;
};

static int count_peers(const struct peer_count *c)
{
    char *t = h_slurp("/proc/net/tcp", NULL);
    int n = 0;
    for (char *l = t ? strchr(t, '\n') : NULL; l && *++l; l = strchr(l, '\n')) {
        unsigned rport, st;
        if (sscanf(l, " %*d: %*x:%*x %*x:%x %x", &rport, &st) == 2 &&
            ((int)rport == c->a || (int)rport == c->b) &&
            (c->st ? (int)st == c->st : st == 1 || st == 8))
            n++;
        if (!strchr(l, '\n'))
            break;
    }
    free(t);
    return n;
}

static int peers_at_least(void *arg)
{
    return count_peers(arg) >= ((struct peer_count *)arg)->want;
}

static int peers_none(void *arg)
{
    return count_peers(arg) == 0;
}

/* Whether stack `path` of doc has a frame of function fn in main.go at line. */
static int has_frame(struct jv *doc, const char *path, const char *fn, int line)
{
    char p[200];
    int n = jq_len(doc, path);
    for (int k = 0; k < n; k++) {
        snprintf(p, sizeof p, "%s.%d.function", path, k);
        const char *f = jq_str(doc, p);
        snprintf(p, sizeof p, "%s.%d.file", path, k);
        const char *file = jq_str(doc, p);
        snprintf(p, sizeof p, "%s.%d.line", path, k);
        if (f && file && !strcmp(f, fn) && strstr(file, "/main.go") && (int)jq_num(doc, p) == line)
            return 1;
    }
    return 0;
}

/* Builds goclient (no_symtab: see build_goclient) in a new directory (in
 * *tmpdir) and runs it in MODE under the recorder until its sockets are
 * where MODE leaves them and past the grace; returns the report, the ports
 * in a, b. */
static struct jv *go_client(const char *mode, int no_symtab, char **tmpdir, int *a, int *b)
{
    need_bpf();
    char *tmp = *tmpdir = h_mkdtemp("bpf-goclient");
    char exe[600];
    build_goclient(tmp, no_symtab, exe, sizeof exe);
    char nreq[16];
    snprintf(nreq, sizeof nreq, "%d", GOCLIENT_REQUESTS);
    char *argv[] = {(char *)exe, (char *)mode, nreq, NULL};
    struct run r;
    run_start(&r, tmp, 0.3, argv);
    char line[128];
    cr_assert(h_read_line(&r.out, line, sizeof line, COND_MS), "no 'ports' line");
    cr_assert_eq(sscanf(line, "ports %d %d", a, b), 2, "%s", line);
    cr_assert(h_read_line(&r.out, line, sizeof line, COND_MS), "the requests never finished");
    cr_assert_str_eq(line, "done");
    struct peer_count c = {*a, *b, 8, 2 * GOCLIENT_REQUESTS};
    if (!strcmp(mode, "leak")) {
        cr_assert(h_wait_for(peers_at_least, &c, COND_MS),
                  "the kernel never showed %d client sockets in CLOSE_WAIT", c.want);
    } else {
        c.st = 0; /* the pool closes each connection at the server's FIN */
        cr_assert(h_wait_for(peers_none, &c, COND_MS), "the client kept connections open");
    }
    await_settled(tmp, !strcmp(mode, "leak") ? c.want : 0);
    return run_finish(&r, 1);
}

/* Every finding close_wait, peer a or b, GOCLIENT_REQUESTS for each. */
static void expect_client_findings(struct jv *doc, int a, int b)
{
    int n = jq_len(doc, "findings");
    cr_assert_eq(n, 2 * GOCLIENT_REQUESTS, "%d findings, expected %d", n, 2 * GOCLIENT_REQUESTS);
    for (int i = 0; i < n; i++) {
        char p[128];
        snprintf(p, sizeof p, "findings.%d.kind", i);
        cr_assert_str_eq(jq_str(doc, p), "close_wait");
        snprintf(p, sizeof p, "findings.%d.eof", i);
        cr_assert_str_eq(jq_str(doc, p), "unread");
        snprintf(p, sizeof p, "findings.%d.peer", i);
        const char *peer = jq_str(doc, p);
        int port = peer && strrchr(peer, ':') ? atoi(strrchr(peer, ':') + 1) : 0;
        cr_assert(port == a || port == b, "finding %d: peer %s is neither server", i, peer);
    }
}

Test(bpf, go_http_client_without_body_close_names_each_request_line, .timeout = 120)
{
    char *tmp;
    int a, b;
    struct jv *doc = go_client("leak", 0, &tmp, &a, &b);
    expect_client_findings(doc, a, b);
    const char *src = src_path("tests/real/goclient/main.go");
    int line_a = h_marker_line(src, "LEAK-LINE-A"), line_b = h_marker_line(src, "LEAK-LINE-B");
    int per[2] = {0, 0};
    for (int i = 0; i < 2 * GOCLIENT_REQUESTS; i++) {
        char p[128], peer[32];
        snprintf(p, sizeof p, "findings.%d.peer", i);
        int port = atoi(strrchr(jq_str(doc, p), ':') + 1);
        snprintf(peer, sizeof peer, ":%d", port);
        /* Its connect ran in net/http's dial goroutine: the request that
         * made it dial names the call site, the one of its own server. */
        snprintf(p, sizeof p, "findings.%d.stacks.request", i);
        int at_a = has_frame(doc, p, "main.fetchA", line_a);
        int at_b = has_frame(doc, p, "main.fetchB", line_b);
        cr_assert(at_a != at_b, "finding %d (peer %s): request stack at A %d, at B %d", i, peer,
                  at_a, at_b);
        cr_assert_eq(port, at_a ? a : b, "finding %d: dialed for %s's request, peer port %d", i,
                     at_a ? "A" : "B", port);
        snprintf(p, sizeof p, "findings.%d.stacks.open", i);
        cr_assert(!has_frame(doc, p, "main.fetchA", line_a) &&
                      !has_frame(doc, p, "main.fetchB", line_b),
                  "the dial goroutine's own stack holds no frame of the program");
        snprintf(p, sizeof p, "findings.%d.request_note", i);
        cr_assert(jq_is_null(doc, p), "finding %d has a request and a note saying it has none", i);
        per[at_b]++;
    }
    cr_assert(per[0] == GOCLIENT_REQUESTS && per[1] == GOCLIENT_REQUESTS, "A %d, B %d", per[0],
              per[1]);
    /* The markdown report shows the request too (a ticket's view). */
    char *margs[] = {"report", "--format=markdown", "--grace=0.3",
                     (char *)jq_str(doc, "processes.0.ring"), NULL};
    char *md = NULL;
    cr_assert_eq(h_closewatch(tmp, margs, &md), 1, "%s", md);
    cr_assert(strstr(md, "Dialed for the request made at:") && strstr(md, "main.fetchA") &&
                  strstr(md, "main.fetchB"),
              "markdown without the requests:\n%s", md);
    free(md);
    jq_free(doc);
    h_rmdir(tmp);
}

Test(bpf, go_http_client_closing_its_bodies_has_no_findings, .timeout = 120)
{
    char *tmp;
    int a, b;
    struct jv *doc = go_client("good", 0, &tmp, &a, &b);
    cr_assert_eq(jq_len(doc, "findings"), 0, "a client that closes its bodies leaks nothing");
    jq_free(doc);
    h_rmdir(tmp);
}

/* No symbol table, no probes: the finding is placed at net/http's dial and
 * says why the program's line is missing. */
Test(bpf, go_http_client_without_symtab_names_the_dial_and_says_why, .timeout = 120)
{
    char *tmp;
    int a, b;
    struct jv *doc = go_client("leak", 1, &tmp, &a, &b);
    expect_client_findings(doc, a, b);
    for (int i = 0; i < 2 * GOCLIENT_REQUESTS; i++) {
        char p[128];
        snprintf(p, sizeof p, "findings.%d.stacks.request", i);
        cr_assert_eq(jq_len(doc, p), 0, "finding %d: a request stack without probes", i);
        snprintf(p, sizeof p, "findings.%d.request_note", i);
        const char *note = jq_str(doc, p);
        cr_assert(note && strstr(note, "net/http dialed it"), "finding %d: note %s", i, note);
    }
    jq_free(doc);
    h_rmdir(tmp);
}

Test(bpf, static_c_client_leaking_one_socket_is_found_with_a_stack, .timeout = 120)
{
    need_bpf();
    char *tmp = h_mkdtemp("bpf-static");
    char exe[600], log[700];
    snprintf(exe, sizeof exe, "%s/static_client", tmp);
    snprintf(log, sizeof log, "%s/cc.log", tmp);
    char *cc[] = {
        "cc", "-static", "-g", "-O0", "-o", exe, (char *)src_path("tests/real/static_client.c"),
        NULL};
    if (run_cmd(cc, NULL, log) != 0)
        cr_skip("no static C library here (cc -static failed: %s)", h_slurp(log, NULL));
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(lfd, 4), 0);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    char port[16];
    snprintf(port, sizeof port, "%d", ntohs(sa.sin_port));
    char *argv[] = {exe, port, NULL};
    struct run r;
    run_start(&r, tmp, 0.3, argv);
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, COND_MS), 1, "the client never connected");
    int fd = accept(lfd, NULL, NULL);
    cr_assert_geq(fd, 0);
    close(fd); /* our FIN: the client reads EOF and keeps its socket */
    char line[64];
    cr_assert(h_read_line(&r.out, line, sizeof line, COND_MS), "the client never saw EOF");
    await_settled(tmp, 1);
    struct jv *doc = run_finish(&r, 1);
    close(lfd);
    cr_assert_eq(jq_len(doc, "findings"), 1);
    cr_assert_str_eq(jq_str(doc, "findings.0.kind"), "close_wait");
    cr_assert_str_eq(jq_str(doc, "findings.0.eof"), "observed");
    cr_assert_geq(jq_len(doc, "findings.0.stacks.open"), 1, "no open stack");
    cr_assert_str_eq(jq_str(doc, "findings.0.stacks.open.0.module"), exe);
    jq_free(doc);
    h_rmdir(tmp);
}

/* How the Go server's life ended, as the report's process state: its exit
 * (stdin closed: main returns) or a SIGKILL. */
static void go_server_end(int sigkill, const char *want)
{
    struct run r;
    int port;
    char *tmp = go_server_run(&r, "bpf-go-end", "good", "", &port);
    h_echo_session(port, 0); /* a socket, so that the recorder makes a ring */
    if (sigkill) {
        pid_t prog = program_pid(r.cw);
        cr_assert_gt(prog, 0);
        cr_assert_eq(kill(prog, SIGKILL), 0);
    }
    struct jv *doc = run_finish(&r, !sigkill);
    cr_assert_eq(jq_len(doc, "processes"), 1, "%d processes", jq_len(doc, "processes"));
    cr_assert_str_eq(jq_str(doc, "processes.0.state"), want);
    jq_free(doc);
    h_rmdir(tmp);
}

Test(bpf, go_server_returning_from_main_reads_as_exited, .timeout = 120)
{
    go_server_end(0, "exited");
}

Test(bpf, go_server_killed_by_a_signal_reads_as_died, .timeout = 120)
{
    go_server_end(1, "died");
}

/* ---- closewatch watch PID --record ------------------------------------------ */

struct attached_report {
    const char *dir;
    pid_t pid;
    struct jv *doc; /* the last report taken */
};

static int count_kind(struct jv *doc, const char *kind)
{
    int n = 0;
    for (int i = 0; i < jq_len(doc, "findings"); i++) {
        char p[64];
        snprintf(p, sizeof p, "findings.%d.kind", i);
        n += !strcmp(jq_str(doc, p), kind);
    }
    return n;
}

/* A report on the attached process with 2 close_wait (made while recorded)
 * and 2 untracked (open before the attach) findings, past a 0.3 s grace. */
static int attached_findings(void *arg)
{
    struct attached_report *a = arg;
    char dirarg[700], pid[16];
    snprintf(dirarg, sizeof dirarg, "--dir=%s", a->dir);
    snprintf(pid, sizeof pid, "%d", (int)a->pid);
    char *args[] = {"report", "--format=json", "--grace=0.3", dirarg, pid, NULL};
    char *out = NULL;
    h_closewatch(a->dir, args, &out);
    jq_free(a->doc);
    a->doc = out ? jq_parse(out, NULL, 0) : NULL;
    free(out);
    return a->doc && count_kind(a->doc, "close_wait") == 2 && count_kind(a->doc, "untracked") == 2;
}

static int ring_made(void *arg)
{
    const struct attached_report *a = arg;
    char paths[2][512];
    return h_rings(a->dir, a->pid, paths, 2) == 1;
}

Test(bpf, watch_record_attaches_to_a_running_go_server, .timeout = 120)
{
    need_bpf();
    char *tmp = h_mkdtemp("bpf-attach");
    char exe[600];
    build_go(tmp, "goserver", "", exe, sizeof exe);
    char *argv[] = {exe, "leak", NULL};
    struct h_piped g = h_spawn_piped(argv, NULL, NULL, 0);
    pid_t srv = g.p.pid;
    struct h_proc so = g.p;
    int port = listening_port(&so);
    char line[128];

    /* Two leaks before closewatch looks at it: no stack can exist for them. */
    for (int i = 0; i < 2; i++)
        h_echo_session(port, 0);
    struct cw_count before = {port, 2};
    cr_assert(h_wait_for(close_wait_at, &before, COND_MS), "no CLOSE_WAIT before the attach");

    char spid[16], dirarg[700], errlog[700];
    snprintf(spid, sizeof spid, "%d", (int)srv);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", tmp);
    snprintf(errlog, sizeof errlog, "%s/watch.err", tmp);
    pid_t w = fork();
    cr_assert_neq(w, -1);
    if (w == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_WRONLY);
        int err = open(errlog, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(devnull, 1);
        dup2(err, 2);
        setenv("CLOSEWATCH_SAMPLE_MS", "50", 1);
        unsetenv("LD_PRELOAD");
        execl(h_path("closewatch"), "closewatch", "watch", spid, "--record", "--interval=0.2",
              dirarg, (char *)NULL);
        _exit(127);
    }
    struct attached_report a = {.dir = tmp, .pid = srv};
    cr_assert(h_wait_for(ring_made, &a, COND_MS), "watch --record made no ring; stderr:\n%s",
              h_slurp(errlog, NULL));

    /* Two more, made while it records: their accept has a stack. */
    for (int i = 0; i < 2; i++)
        h_echo_session(port, 0);
    cr_assert(h_wait_for(attached_findings, &a, COND_MS),
              "no report with 2 close_wait + 2 untracked; stderr:\n%s", h_slurp(errlog, NULL));
    jq_free(a.doc);
    a.doc = NULL;

    cr_assert_eq(kill(w, SIGINT), 0);
    int st;
    cr_assert_eq(waitpid(w, &st, 0), w);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "watch ended with status %#x", st);
    char *err = h_slurp(errlog, NULL);
    cr_assert(err && strstr(err, "recording stopped"), "watch's stderr:\n%s", err);
    free(err);

    /* After the watch: the ring tells when its record began and ended. */
    cr_assert(attached_findings(&a), "the report changed once the watch stopped");
    struct jv *doc = a.doc;
    cr_assert_str_eq(jq_str(doc, "processes.0.recorder"), "bpf");
    cr_assert_gt(jq_num(doc, "processes.0.recorded_from_seconds"), 0);
    cr_assert_gt(jq_num(doc, "processes.0.recorded_until_seconds"),
                 jq_num(doc, "processes.0.recorded_from_seconds"));
    int accept_line = h_marker_line(src_path("tests/real/goserver/main.go"), "MARK-ACCEPT");
    for (int i = 0; i < jq_len(doc, "findings"); i++) {
        char p[96];
        snprintf(p, sizeof p, "findings.%d.kind", i);
        if (!strcmp(jq_str(doc, p), "untracked")) {
            snprintf(p, sizeof p, "findings.%d.no_stack_note", i);
            cr_assert(strstr(jq_str(doc, p), "open before closewatch attached"), "%s",
                      jq_str(doc, p));
            continue;
        }
        cr_assert(main_frame_at(doc, i, "open", accept_line),
                  "close_wait finding %d does not name main.go:%d", i, accept_line);
    }
    jq_free(doc);
    close(g.in_fd);
    cr_assert(h_read_line(&so, line, sizeof line, COND_MS) && !strcmp(line, "bye"),
              "the server did not end normally after the watch: %s", line);
    cr_assert_eq(waitpid(srv, &st, 0), srv);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the server's status %#x", st);
    close(so.out_fd);
    h_rmdir(tmp);
}

/* Built with -ldflags='-s -w' (no DWARF, no symbol table): the frames are
 * named through the binary's .gopclntab, the Accept line included. */
Test(bpf, stripped_go_server_leak_is_named_through_its_pclntab, .timeout = 120)
{
    struct run r;
    int port;
    char *tmp = go_server_run(&r, "bpf-go-stripped", "leak", "-s -w", &port);
    for (int i = 0; i < 2; i++)
        h_echo_session(port, 0);
    struct cw_count c = {port, 2};
    cr_assert(h_wait_for(close_wait_at, &c, COND_MS), "the kernel never showed 2 CLOSE_WAIT");
    await_settled(tmp, 2);
    struct jv *doc = run_finish(&r, 1);
    int accept_line = h_marker_line(src_path("tests/real/goserver/main.go"), "MARK-ACCEPT");
    cr_assert_eq(jq_len(doc, "findings"), 2);
    for (int i = 0; i < 2; i++)
        cr_assert(main_frame_at(doc, i, "open", accept_line),
                  "stripped: finding %d has no main.* frame at main.go:%d", i, accept_line);
    jq_free(doc);
    h_rmdir(tmp);
}

/*
 * test_lang_node.c - JavaScript frames in the stacks of a real Node program
 * (the machine's node; preload/jsframes.c, preload/closewatch-node.js):
 * under `closewatch run` a leaking net server's findings name the
 * createServer line of tests/real/node_server.js (JSON frames with language
 * "javascript", the text report's "where:"), a keep-alive agent client's
 * finding names its http.get line, a fetch() whose body is never read names
 * the fetch line (and reading it leaves nothing); a worker thread's server and
 * a SIGKILLed server (post-mortem, SARIF) name the same lines; plain LD_PRELOAD without the opt-in
 * gives native frames only and the server works the same; a program that
 * opens thousands of sockets prints and exits the same with and without.
 * Lines are found by their markers in the script, not copied from output.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "jsonq.h"

#define COND_MS 20000

static const char *script(const char *name)
{
    static char p[2][1024];
    static int k;
    char rel[1100];
    snprintf(rel, sizeof rel, "%s/../tests/real/%s", h_build(), name);
    char *out = p[k++ % 2];
    cr_assert(realpath(rel, out), "cannot find %s", rel);
    return out;
}

static int marker_line(const char *marker)
{
    return h_marker_line(script("node_server.js"), marker);
}

static void need_node(void)
{
    if (system("node --version >/dev/null 2>&1") != 0)
        cr_skip_test("node is not installed here (scripts/install-test-deps.sh node)");
}

/* A program with a pipe on its stdin (closed to make node_server.js exit)
 * and its stdout captured. */
static struct h_piped start(char *const argv[], int preload, const char *dir)
{
    static const char *const runtime_options[] = {"NODE_OPTIONS", NULL};
    return h_spawn_piped(argv, preload ? dir : NULL, runtime_options, 0);
}

/* The live report of the rings in dir, once it has n findings. */
static struct jv *live_findings(const char *dir, int n)
{
    char dirarg[700];
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    uint64_t end = h_now_ms() + COND_MS;
    char *out = NULL;
    for (;;) {
        char *args[] = {"report", "--format=json", "--grace=0.2", dirarg, NULL};
        free(out);
        h_closewatch(dir, args, &out);
        char err[256];
        struct jv *doc = jq_parse(out, err, sizeof err);
        cr_assert_not_null(doc, "%s: %s", err, out);
        if (jq_len(doc, "findings") == n) {
            free(out);
            return doc;
        }
        jq_free(doc);
        cr_assert_lt(h_now_ms(), end, "no %d findings: %s", n, out);
        usleep(100 * 1000); /* polling a condition: the grace must pass */
    }
}

/* Whether stack (a JSON array) has a javascript frame in file at line. */
static int has_js_line(const struct jv *stack, const char *file, int line)
{
    for (int i = 0; i < jq_len(stack, NULL); i++) {
        char p[32];
        snprintf(p, sizeof p, "%d", i);
        const struct jv *f = jq_get(stack, p);
        const char *ff = jq_str(f, "file"), *lang = jq_str(f, "language");
        if (ff && lang && !strcmp(ff, file) && !strcmp(lang, "javascript") &&
            jq_num(f, "line") == line)
            return 1;
    }
    return 0;
}

static int count_lang(const struct jv *stack, const char *lang)
{
    int n = 0;
    for (int i = 0; i < jq_len(stack, NULL); i++) {
        char p[32];
        snprintf(p, sizeof p, "%d", i);
        const char *l = jq_str(jq_get(stack, p), "language");
        n += l && !strcmp(l, lang);
    }
    return n;
}

/* The leaking server (in a worker thread: in_worker) under `closewatch run`
 * (closewatch_run) or plain LD_PRELOAD: 3 findings, whose open stacks name
 * the createServer line only in the first case. */
static void server(int closewatch_run, int in_worker)
{
    need_node();
    char *dir = h_mkdtemp("langnode");
    char report[700], dirarg[700];
    snprintf(report, sizeof report, "--output=%s/report.json", dir);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    const char *js = script("node_server.js");
    char *run[] = {(char *)h_path("closewatch"),
                   "run",
                   "--format=json",
                   "--grace=0.2",
                   report,
                   dirarg,
                   "--keep",
                   "--error-exitcode=42",
                   "--",
                   "node",
                   (char *)js,
                   "server",
                   "leak",
                   in_worker ? "worker" : NULL,
                   NULL};
    char *plain[] = {"node", (char *)js, "server", "leak", in_worker ? "worker" : NULL, NULL};
    struct h_piped g = start(closewatch_run ? run : plain, !closewatch_run, dir);
    char line[256];
    cr_assert(h_read_line(&g.p, line, sizeof line, COND_MS), "node did not start");
    cr_assert(!strncmp(line, "listening ", 10), "%s", line);
    int port = atoi(line + 10);
    for (int i = 0; i < 3; i++)
        h_echo_session(port, 0);
    int create_line = marker_line("cw-mark: server-created");
    struct jv *live = live_findings(dir, 3);
    for (int i = 0; i < 3; i++) {
        char path[64];
        snprintf(path, sizeof path, "findings.%d.stacks.open", i);
        const struct jv *st = jq_get(live, path);
        if (closewatch_run)
            cr_assert(has_js_line(st, js, create_line), "no %s:%d in %s", js, create_line, path);
        else
            cr_assert_eq(count_lang(st, "javascript"), 0, "javascript frames without the opt-in");
        cr_assert_gt(count_lang(st, "c"), 0, "the native frames must stay");
    }
    jq_free(live);
    close(g.in_fd);
    cr_assert(h_read_line(&g.p, line, sizeof line, COND_MS), "no goodbye");
    cr_assert_str_eq(line, "bye 3");
    int st = h_wait(&g.p, COND_MS);
    cr_assert(WIFEXITED(st), "node did not exit");
    if (!closewatch_run) {
        cr_assert_eq(WEXITSTATUS(st), 0);
        h_rmdir(dir);
        free(dir);
        return;
    }
    cr_assert_eq(WEXITSTATUS(st), 42, "closewatch run exited %d, not --error-exitcode",
                 WEXITSTATUS(st));
    char *out = NULL;
    char path[700];
    snprintf(path, sizeof path, "%s/report.json", dir);
    out = h_slurp(path, NULL);
    char err[256];
    struct jv *doc = jq_parse(out, err, sizeof err);
    cr_assert_not_null(doc, "%s: %s", err, out);
    cr_assert_eq(jq_len(doc, "findings"), 3, "%s", out);
    cr_assert(has_js_line(jq_get(doc, "findings.0.stacks.open"), js, create_line), "%s", out);
    jq_free(doc);
    free(out);

    /* The text report, from the kept ring: the createServer line first. */
    char *targs[] = {"report", "--grace=0.2", dirarg, NULL};
    cr_assert_eq(h_closewatch(dir, targs, &out), 1, "%s", out);
    char where[1200];
    snprintf(where, sizeof where, "  where: opened at %s:%d (", js, create_line);
    cr_assert(strstr(out, where), "no '%s' in:\n%s", where, out);
    free(out);
    h_rmdir(dir);
    free(dir);
}

Test(lang_node, server_findings_name_create_server_line, .timeout = 90)
{
    server(1, 0);
}

/*
 * SIGKILL of the leaking server: the report from its ring still names the
 * createServer line (the names were written into the ring when the server
 * was made), and SARIF's first location is that file and line.
 */
Test(lang_node, killed_server_post_mortem_and_sarif_name_create_server_line, .timeout = 90)
{
    need_node();
    char *dir = h_mkdtemp("langnodekill");
    char dirarg[700];
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    const char *js = script("node_server.js");
    char *run[] = {(char *)h_path("closewatch"),
                   "run",
                   "--output=/dev/null",
                   dirarg,
                   "--keep",
                   "--",
                   "node",
                   (char *)js,
                   "server",
                   "leak",
                   NULL};
    struct h_piped g = start(run, 0, dir);
    char line[256];
    cr_assert(h_read_line(&g.p, line, sizeof line, COND_MS), "node did not start");
    cr_assert(!strncmp(line, "listening ", 10), "%s", line);
    for (int i = 0; i < 2; i++)
        h_echo_session(atoi(line + 10), 0);
    struct jv *live = live_findings(dir, 2);
    int node_pid = (int)jq_num(live, "findings.0.pid");
    jq_free(live);
    cr_assert_gt(node_pid, 1);
    cr_assert_eq(kill(node_pid, SIGKILL), 0);
    h_wait(&g.p, COND_MS);
    close(g.in_fd);

    int create_line = marker_line("cw-mark: server-created");
    char *out = NULL;
    char *jargs[] = {"report", "--format=json", "--grace=0.2", dirarg, NULL};
    h_closewatch(dir, jargs, &out);
    char err[256];
    struct jv *doc = jq_parse(out, err, sizeof err);
    cr_assert_not_null(doc, "%s: %s", err, out);
    cr_assert_eq(jq_len(doc, "findings"), 2, "%s", out);
    for (int i = 0; i < 2; i++) {
        char path[64];
        snprintf(path, sizeof path, "findings.%d.stacks.open", i);
        cr_assert(has_js_line(jq_get(doc, path), js, create_line), "no %s:%d in %s of %s", js,
                  create_line, path, out);
    }
    jq_free(doc);
    free(out);

    char *sargs[] = {"report", "--format=sarif", "--grace=0.2", dirarg, NULL};
    h_closewatch(dir, sargs, &out);
    doc = jq_parse(out, err, sizeof err);
    cr_assert_not_null(doc, "%s: %s", err, out);
    const struct jv *loc = jq_get(doc, "runs.0.results.0.locations.0.physicalLocation");
    char uri[1100];
    snprintf(uri, sizeof uri, "file://%s", js);
    cr_assert_str_eq(jq_str(loc, "artifactLocation.uri"), uri, "%s", out);
    cr_assert_eq(jq_num(loc, "region.startLine"), create_line, "%s", out);
    jq_free(doc);
    free(out);
    h_rmdir(dir);
    free(dir);
}

/* Each worker thread loads the JS preload and the library's module again. */
Test(lang_node, worker_thread_server_findings_name_create_server_line, .timeout = 90)
{
    server(1, 1);
}

Test(lang_node, plain_preload_without_opt_in_is_native_only, .timeout = 90)
{
    server(0, 0);
}

/*
 * A client role of node_server.js against our HTTP server, which answers
 * one request with a body of body_len bytes and then closes. leak: the
 * finding's open stack names the marker's line. good: the client closes
 * its socket (we read its FIN) and nothing is found.
 */
static void client(const char *role, int leak, size_t body_len, const char *marker)
{
    need_node();
    char *dir = h_mkdtemp("langnodecli");
    int port;
    int lfd = h_listen(&port);
    char port_arg[16], dirarg[700];
    snprintf(port_arg, sizeof port_arg, "%d", port);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    const char *js = script("node_server.js");
    char *run[] = {(char *)h_path("closewatch"),
                   "run",
                   "--format=json",
                   "--grace=0.2",
                   "--output=/dev/null",
                   dirarg,
                   "--keep",
                   "--",
                   "node",
                   (char *)js,
                   (char *)role,
                   leak ? "leak" : "good",
                   port_arg,
                   NULL};
    struct h_piped g = start(run, 0, dir);
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, COND_MS), 1, "the client did not connect");
    int conn = accept(lfd, NULL, NULL);
    cr_assert_geq(conn, 0);
    char buf[4096];
    size_t n = 0;
    while (n < sizeof buf - 1 && !strstr(buf, "\r\n\r\n")) {
        ssize_t r = h_read_deadline(conn, buf + n, sizeof buf - 1 - n, COND_MS);
        cr_assert_gt(r, 0, "no request");
        n += (size_t)r;
        buf[n] = 0;
    }
    char head[160];
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
                      "Connection: keep-alive\r\nKeep-Alive: timeout=60\r\n\r\n",
                      body_len);
    cr_assert_eq(write(conn, head, (size_t)hl), hl);
    char *body = malloc(body_len);
    for (size_t i = 0; i < body_len; i++)
        body[i] = "ok"[i % 2];
    for (size_t off = 0; off < body_len;) {
        ssize_t w = write(conn, body + off, body_len - off);
        cr_assert_gt(w, 0, "cannot send the body");
        off += (size_t)w;
    }
    free(body);
    char line[256];
    cr_assert(h_read_line(&g.p, line, sizeof line, COND_MS) && !strcmp(line, "idle"));
    cr_assert_eq(shutdown(conn, SHUT_WR), 0); /* the server ends the idle connection */
    if (leak) {
        struct jv *live = live_findings(dir, 1);
        int req_line = marker_line(marker);
        cr_assert(has_js_line(jq_get(live, "findings.0.stacks.open"), js, req_line),
                  "no %s:%d in the client's open stack", js, req_line);
        jq_free(live);
    } else {
        while (h_read_deadline(conn, buf, sizeof buf, COND_MS) > 0) /* until the client's FIN */
            ;
        struct jv *live = live_findings(dir, 0);
        jq_free(live);
    }
    close(conn);
    close(g.in_fd);
    h_wait(&g.p, COND_MS);
    close(lfd);
    h_rmdir(dir);
    free(dir);
}

Test(lang_node, keepalive_client_finding_names_request_line, .timeout = 90)
{
    client("client", 1, 2, "cw-mark: client-request");
}

/* fetch() connects ~35 frames below the program's call, inside undici. */
Test(lang_node, fetch_unread_body_finding_names_fetch_line, .timeout = 90)
{
    client("fetch", 1, 100 << 10, "cw-mark: fetch-request");
}

Test(lang_node, fetch_read_body_no_finding, .timeout = 90)
{
    client("fetch", 0, 100 << 10, "cw-mark: fetch-request");
}

static int run_all(char *const argv[], char *out, size_t len)
{
    struct h_piped g = start(argv, 0, NULL);
    close(g.in_fd);
    size_t n = 0;
    for (ssize_t r;
         n < len - 1 && (r = h_read_deadline(g.p.out_fd, out + n, len - 1 - n, COND_MS)) > 0;)
        n += (size_t)r;
    out[n] = 0;
    int st = h_wait(&g.p, COND_MS);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(lang_node, thousands_of_sockets_behave_the_same, .timeout = 120)
{
    need_node();
    const char *js = script("node_churn.js");
    char plain_out[256], cw_out[256];
    char *plain[] = {"node", (char *)js, "3000", NULL};
    char *run[] = {(char *)h_path("closewatch"),
                   "run",
                   "--output=/dev/null",
                   "--",
                   "node",
                   (char *)js,
                   "3000",
                   NULL};
    int a = run_all(plain, plain_out, sizeof plain_out);
    int b = run_all(run, cw_out, sizeof cw_out);
    cr_assert_eq(a, 0, "%s", plain_out);
    cr_assert_eq(b, a);
    cr_assert_str_eq(cw_out, plain_out);
    cr_assert_str_eq(plain_out, "done 3000 12000\n");
}

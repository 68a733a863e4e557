/*
 * test_lang_java.c - Java frames in the stacks of real Java programs
 * (OpenJDK's java, single-file source launch; preload/jframes.c): the
 * thread-per-connection server of tests/real/JavaServer.java that leaks
 * every connection has findings whose open stacks name its accept() line
 * in JavaServer.java (JSON frames of language "java", the text report's
 * "where:"), its correct variant has none, a post-mortem after SIGKILL still
 * names the file; an HttpURLConnection pool client whose server closed the
 * idle connection has a finding naming the client's request line; a
 * program that opens thousands of sockets prints and exits the same with
 * and without the preload, and nothing is written on its stderr. Lines are
 * found by their markers in the sources, not copied from output.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "jsonq.h"

#define COND_MS 30000

static const char *source(const char *name)
{
    static char p[2][1024];
    static int k;
    char rel[1100];
    snprintf(rel, sizeof rel, "%s/../tests/real/%s", h_build(), name);
    char *out = p[k++ % 2];
    cr_assert(realpath(rel, out), "cannot find %s", rel);
    return out;
}

static void need_java(void)
{
    if (system("java -version >/dev/null 2>&1") != 0)
        cr_skip_test("java is not installed here (scripts/install-test-deps.sh java)");
}

/* A program with a pipe on its stdin (closed to make it exit), its stdout
 * captured and, if err_fd, its stderr too. */
struct prog {
    struct h_proc p;
    int in_fd, err_fd;
};

static struct prog start(char *const argv[], int preload, const char *dir)
{
    int in[2], out[2], err[2];
    cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(err, O_CLOEXEC), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        if (preload) {
            setenv("LD_PRELOAD", h_path("libclosewatch.so"), 1);
            setenv("CLOSEWATCH_DIR", dir, 1);
        }
        unsetenv("JAVA_TOOL_OPTIONS");
        unsetenv("JDK_JAVA_OPTIONS");
        execvp(argv[0], argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    return (struct prog){.p = {.pid = pid, .out_fd = out[0]}, .in_fd = in[1], .err_fd = err[0]};
}

/* The live report of the rings in dir for pid, once it has n findings. */
static struct jv *live_findings(const char *dir, pid_t pid, int n)
{
    char dirarg[700], pidarg[16];
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(pidarg, sizeof pidarg, "%d", (int)pid);
    uint64_t end = h_now_ms() + COND_MS;
    char *out = NULL;
    for (;;) {
        char *args[] = {"report", "--format=json", "--grace=0.2", dirarg, pidarg, NULL};
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

/* Whether stack (a JSON array) has a java frame of a function starting
 * with fn_prefix in file at line. */
static int has_java_line(const struct jv *stack, const char *fn_prefix, const char *file, int line)
{
    for (int i = 0; i < jq_len(stack, NULL); i++) {
        char p[32];
        snprintf(p, sizeof p, "%d", i);
        const struct jv *f = jq_get(stack, p);
        const char *ff = jq_str(f, "file"), *lang = jq_str(f, "language"),
                   *fn = jq_str(f, "function");
        if (ff && lang && fn && !strcmp(ff, file) && !strcmp(lang, "java") &&
            !strncmp(fn, fn_prefix, strlen(fn_prefix)) && jq_num(f, "line") == line)
            return 1;
    }
    return 0;
}

static ssize_t read_deadline(int fd, void *buf, size_t n)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, COND_MS), 1, "no data within %d ms", COND_MS);
    return read(fd, buf, n);
}

/* An echo session that ends with our FIN, which the leaking server ignores. */
static void echo_session(int port)
{
    int fd = h_connect(port);
    cr_assert_eq(write(fd, "hello\n", 6), 6);
    char buf[16];
    size_t got = 0;
    while (got < 6) {
        ssize_t r = read_deadline(fd, buf + got, sizeof buf - got);
        cr_assert_gt(r, 0, "the server closed before echoing");
        got += (size_t)r;
    }
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    close(fd);
}

/* JavaServer.java in mode leak|good (blocking) under plain LD_PRELOAD,
 * with `sessions` echo sessions done; its port in *port. */
static struct prog server(const char *dir, const char *mode, int sessions)
{
    char *argv[] = {"java", (char *)source("JavaServer.java"), (char *)mode, "blocking", NULL};
    struct prog g = start(argv, 1, dir);
    char line[256];
    cr_assert(h_read_line(&g.p, line, sizeof line, COND_MS), "java did not start");
    cr_assert(!strncmp(line, "listening ", 10), "%s", line);
    int port = atoi(line + 10);
    for (int i = 0; i < sessions; i++)
        echo_session(port);
    return g;
}

static void stop(struct prog *g, const char *bye)
{
    close(g->in_fd);
    char line[256];
    cr_assert(h_read_line(&g->p, line, sizeof line, COND_MS), "no goodbye");
    cr_assert_str_eq(line, bye);
    int st = h_wait(&g->p, COND_MS);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "java ended with status %#x", st);
    close(g->err_fd);
}

Test(lang_java, leaking_server_findings_name_the_accept_line, .timeout = 120)
{
    need_java();
    char *dir = h_mkdtemp("langjava");
    struct prog g = server(dir, "leak", 3);
    int accept_line = h_marker_line(source("JavaServer.java"), "cw:java-accept");
    struct jv *live = live_findings(dir, g.p.pid, 3);
    for (int i = 0; i < 3; i++) {
        char path[64];
        snprintf(path, sizeof path, "findings.%d.stacks.open", i);
        cr_assert(has_java_line(jq_get(live, path), "JavaServer.", "JavaServer.java", accept_line),
                  "no JavaServer.java:%d in %s", accept_line, path);
    }
    jq_free(live);

    /* The text report's headline names the accept line. */
    char dirarg[700], pidarg[16], *out = NULL;
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(pidarg, sizeof pidarg, "%d", (int)g.p.pid);
    char *targs[] = {"report", "--grace=0.2", dirarg, pidarg, NULL};
    cr_assert_eq(h_closewatch(dir, targs, &out), 1, "%s", out);
    char where[128];
    snprintf(where, sizeof where, "  where: opened at JavaServer.java:%d (JavaServer.",
             accept_line);
    cr_assert(strstr(out, where), "no '%s' in:\n%s", where, out);
    free(out);
    stop(&g, "bye");
    h_rmdir(dir);
    free(dir);
}

/* Sockets accepted by pid still open, or -1 until 3 were accepted. */
static int accepted_open(const char *dir, pid_t pid)
{
    struct cw_ring r;
    h_open_ring(&r, dir, pid);
    struct cw_ring_iter it;
    struct cw_event ev;
    int accepted = 0, open = 0;
    cw_ring_iter_begin(&r, &it);
    while (cw_ring_iter_next(&r, &it, &ev))
        accepted += ev.type == CW_EV_OPEN && cw_open_arg_origin(ev.arg0) == CW_ORIGIN_ACCEPT;
    for (uint32_t fd = 0; fd < r.hdr.fd_cap; fd++) {
        struct cw_fd_entry e;
        if (cw_ring_fd(&r, fd, &e) && (e.sid & CW_SID_OPEN) && e.origin == CW_ORIGIN_ACCEPT)
            open++;
    }
    cw_ring_close(&r);
    return accepted < 3 ? -1 : open;
}

Test(lang_java, correct_server_has_no_findings, .timeout = 120)
{
    need_java();
    char *dir = h_mkdtemp("langjavagood");
    struct prog g = server(dir, "good", 3);
    /* Every accepted socket closed (3 accepts in the events, none open
     * in the fd table), then past the grace: a leak would be a finding. */
    for (uint64_t end = h_now_ms() + COND_MS;; usleep(50 * 1000) /* polling a condition */) {
        cr_assert_lt(h_now_ms(), end, "the server did not close its 3 sockets");
        if (accepted_open(dir, g.p.pid) == 0)
            break;
    }
    usleep(300 * 1000); /* past the grace (0.2 s): a leak would be a finding now */
    char dirarg[700], pidarg[16], *out = NULL;
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(pidarg, sizeof pidarg, "%d", (int)g.p.pid);
    char *args[] = {"report", "--grace=0.2", dirarg, pidarg, NULL};
    cr_assert_eq(h_closewatch(dir, args, &out), 0, "%s", out);
    cr_assert(strstr(out, "SUMMARY: closewatch: no leaked sockets"), "%s", out);
    free(out);
    stop(&g, "bye");
    h_rmdir(dir);
    free(dir);
}

Test(lang_java, post_mortem_after_sigkill_names_the_source, .timeout = 120)
{
    need_java();
    char *dir = h_mkdtemp("langjavakill");
    struct prog g = server(dir, "leak", 2);
    uint64_t end = h_now_ms() + COND_MS;
    while (h_kernel_close_wait(g.p.pid) < 2) {
        cr_assert_lt(h_now_ms(), end, "the leaked sockets never reached CLOSE_WAIT");
        usleep(20 * 1000); /* polling a condition */
    }
    kill(g.p.pid, SIGKILL);
    int st = h_wait(&g.p, COND_MS);
    cr_assert(WIFSIGNALED(st));
    close(g.in_fd);
    close(g.err_fd);
    int accept_line = h_marker_line(source("JavaServer.java"), "cw:java-accept");
    char dirarg[700], *out = NULL;
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    char *args[] = {"report", "--grace=0", dirarg, NULL};
    h_closewatch(dir, args, &out);
    char where[128];
    snprintf(where, sizeof where, "opened at JavaServer.java:%d (JavaServer.", accept_line);
    cr_assert(strstr(out, where), "no '%s' in:\n%s", where, out);
    cr_assert(strstr(out, "died"), "%s", out);
    free(out);
    h_rmdir(dir);
    free(dir);
}

Test(lang_java, pooled_client_finding_names_the_request_line, .timeout = 120)
{
    need_java();
    char *dir = h_mkdtemp("langjavacli");
    int port;
    int lfd = h_listen(&port);
    char port_arg[16];
    snprintf(port_arg, sizeof port_arg, "%d", port);
    char *argv[] = {"java", (char *)source("JavaClient.java"), port_arg, NULL};
    struct prog g = start(argv, 1, dir);
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, COND_MS), 1, "the client did not connect");
    int conn = accept(lfd, NULL, NULL);
    cr_assert_geq(conn, 0);
    char buf[4096];
    size_t n = 0;
    buf[0] = 0;
    while (n < sizeof buf - 1 && !strstr(buf, "\r\n\r\n")) {
        ssize_t r = read_deadline(conn, buf + n, sizeof buf - 1 - n);
        cr_assert_gt(r, 0, "no request");
        n += (size_t)r;
        buf[n] = 0;
    }
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                               "Connection: keep-alive\r\nKeep-Alive: timeout=60\r\n\r\nok";
    cr_assert_eq(write(conn, resp, sizeof resp - 1), (ssize_t)(sizeof resp - 1));
    char line[256];
    cr_assert(h_read_line(&g.p, line, sizeof line, COND_MS) && !strcmp(line, "idle"), "%s", line);
    close(conn); /* the server closes the idle connection */
    struct jv *live = live_findings(dir, g.p.pid, 1);
    int req_line = h_marker_line(source("JavaClient.java"), "cw:java-request");
    cr_assert(has_java_line(jq_get(live, "findings.0.stacks.open"), "JavaClient.fetch",
                            "JavaClient.java", req_line),
              "no JavaClient.java:%d in the client's open stack", req_line);
    cr_assert_str_eq(jq_str(live, "findings.0.kind"), "close_wait");
    jq_free(live);
    stop(&g, "bye 2");
    close(lfd);
    h_rmdir(dir);
    free(dir);
}

/* Everything the program wrote on stdout and stderr, and its exit status. */
static int run_all(char *const argv[], int preload, const char *dir, char *out, size_t len,
                   char *err, size_t elen)
{
    struct prog g = start(argv, preload, dir);
    close(g.in_fd);
    size_t n = 0;
    for (ssize_t r; n < len - 1 && (r = read_deadline(g.p.out_fd, out + n, len - 1 - n)) > 0;)
        n += (size_t)r;
    out[n] = 0;
    n = 0;
    for (ssize_t r; n < elen - 1 && (r = read_deadline(g.err_fd, err + n, elen - 1 - n)) > 0;)
        n += (size_t)r;
    err[n] = 0;
    close(g.err_fd);
    int st = h_wait(&g.p, COND_MS * 2);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(lang_java, thousands_of_sockets_behave_the_same, .timeout = 180)
{
    need_java();
    char *dir = h_mkdtemp("langjavachurn");
    char *argv[] = {"java", (char *)source("JavaChurn.java"), "3000", NULL};
    char plain_out[256], cw_out[256], plain_err[4096], cw_err[4096];
    int a = run_all(argv, 0, NULL, plain_out, sizeof plain_out, plain_err, sizeof plain_err);
    int b = run_all(argv, 1, dir, cw_out, sizeof cw_out, cw_err, sizeof cw_err);
    cr_assert_eq(a, 0, "%s%s", plain_out, plain_err);
    cr_assert_eq(b, a);
    cr_assert_str_eq(cw_out, plain_out);
    cr_assert_str_eq(cw_err, plain_err, "the preload changed stderr");
    cr_assert_str_eq(plain_out, "done 3000 188484\n");
    /* And it recorded them, with Java frames. */
    struct cw_ring r;
    h_open_ring(&r, dir, 0);
    cr_assert_geq(r.hdr.next_sid, 6000);
    struct cw_runtime rt;
    cr_assert(cw_ring_runtime(&r, CW_LANG_JAVA, &rt), "no Java runtime record");
    cr_assert_eq(rt.status, CW_RT_WALKED, "%s: %s", rt.name, rt.reason);
    cw_ring_close(&r);
    h_rmdir(dir);
    free(dir);
}

/*
 * test_e2e.c - the analyzer end to end (suite e2e): real fixture servers and
 * clients talk over 127.0.0.1 under `closewatch run` or plain LD_PRELOAD,
 * then build/closewatch itself (run, report, watch, dump) is executed and its
 * exit status, stderr and reports are checked; JSON and SARIF are parsed
 * with the strict parser in jsonq.c, whose own tests are suite jsonq here.
 *
 * Every test works in a private temp directory (--dir / CLOSEWATCH_DIR), so
 * tests running in parallel never see each other's rings. Nothing waits by
 * sleeping: fixtures announce their progress on stdout, and conditions
 * (a sampled CLOSE_WAIT, a finding in a live report) are polled with a
 * deadline. The only fixed delays are inside fixtures, where the time a
 * socket spends in CLOSE_WAIT is what is being tested.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <pthread.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "jsonq.h"

/* A closewatch command that takes longer than this has hung. */
#define CMD_TIMEOUT_MS 20000
/* The limit run_argv applies; a test expecting a quick answer lowers it
 * (each Criterion test runs in a process of its own). */
static int e2e_cmd_timeout_ms = CMD_TIMEOUT_MS;
/* How long a condition (a line, a sampled state, a finding) may take. */
#define COND_TIMEOUT_MS 10000

/* ---- small utilities ------------------------------------------------------ */

static void spit(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(data, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = s ? strlen(s) : 0, m = strlen(suffix);
    return s && n >= m && !strcmp(s + n - m, suffix);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* h_rmdir does not descend: run directories sit inside the test's dir. */
static void rm_tree(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/*
 * What a test leaves behind is cleaned up in the suite's fini, which
 * Criterion runs also after a failed assertion: the test's directory, and
 * background processes it started but did not see exit.
 */
static char *e2e_dir;
static pid_t e2e_pids[16];
static int e2e_npids;

static const char *e2e_mkdtemp(const char *tag)
{
    char full[64];
    snprintf(full, sizeof full, "e2e-%s", tag);
    e2e_dir = h_mkdtemp(full);
    return e2e_dir;
}

static void e2e_track(pid_t pid)
{
    cr_assert_lt(e2e_npids, 16);
    e2e_pids[e2e_npids++] = pid;
}

static void e2e_untrack(pid_t pid)
{
    for (int i = 0; i < e2e_npids; i++)
        if (e2e_pids[i] == pid)
            e2e_pids[i] = e2e_pids[--e2e_npids];
}

/* Ends a child that overran: SIGTERM first, which `closewatch run`
 * forwards to its program, then SIGKILL. */
static void stop(pid_t pid)
{
    int st;
    kill(pid, SIGTERM);
    for (int t = 0; t < 2000 && waitpid(pid, &st, WNOHANG) == 0; t++) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    if (kill(pid, SIGKILL) == 0)
        waitpid(pid, &st, 0);
}

static void e2e_fini(void)
{
    for (int i = 0; i < e2e_npids; i++)
        stop(e2e_pids[i]);
    e2e_npids = 0;
    if (e2e_dir)
        rm_tree(e2e_dir);
    free(e2e_dir);
    e2e_dir = NULL;
}

TestSuite(e2e, .fini = e2e_fini);

static int count_entries(const char *dir, const char *prefix)
{
    int n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && !strncmp(e->d_name, prefix, strlen(prefix)))
            n++;
    closedir(d);
    return n;
}

/* ---- running closewatch ---------------------------------------------------- */

struct cmd {
    int status; /* wait status */
    char *out, *err;
};

static void cmd_free(struct cmd *c)
{
    free(c->out);
    free(c->err);
    c->out = c->err = NULL;
}

/* Exit code of a finished command, failing the test if it crashed. */
static int exit_code(const struct cmd *c)
{
    cr_assert(!WIFSIGNALED(c->status), "closewatch killed by signal %d; stderr:\n%s",
              WTERMSIG(c->status), c->err);
    cr_assert(WIFEXITED(c->status));
    return WEXITSTATUS(c->status);
}

/* In the child: the environment every closewatch and fixture run gets. */
static void child_env(char *const env[], int preload, const char *ring_dir)
{
    /* Nothing from the developer's shell may steer the run. */
    unsetenv("CLOSEWATCH_DIR");
    unsetenv("CLOSEWATCH_SAMPLE_MS");
    unsetenv("CLOSEWATCH_DISABLE");
    for (int i = 0; env && env[i]; i++)
        putenv(env[i]);
    if (preload) {
        char lib[1024];
        snprintf(lib, sizeof lib, "%s/libclosewatch.so", h_build());
        setenv("LD_PRELOAD", lib, 1);
        setenv("CLOSEWATCH_DIR", ring_dir, 1);
    } else {
        unsetenv("LD_PRELOAD");
    }
}

static void redirect(int fd, const char *path, int flags)
{
    int f = open(path, flags, 0600);
    if (f < 0 || dup2(f, fd) < 0)
        _exit(126);
    close(f);
}

/*
 * Runs argv to completion with stdout and stderr captured in files under
 * dir (no pipes: a big report cannot block the child).
 */
static struct cmd run_argv(const char *dir, char *const argv[], char *const env[], int preload,
                           const char *ring_dir)
{
    static int seq;
    char out[1024], err[1024];
    snprintf(out, sizeof out, "%s/cmd%d.out", dir, seq);
    snprintf(err, sizeof err, "%s/cmd%d.err", dir, seq++);
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        child_env(env, preload, ring_dir);
        redirect(0, "/dev/null", O_RDONLY);
        redirect(1, out, O_WRONLY | O_CREAT | O_TRUNC);
        redirect(2, err, O_WRONLY | O_CREAT | O_TRUNC);
        execv(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    uint64_t end = h_now_ms() + (uint64_t)e2e_cmd_timeout_ms;
    struct cmd c = {0};
    for (;;) {
        pid_t r = waitpid(pid, &c.status, WNOHANG);
        if (r == pid)
            break;
        if (h_now_ms() > end) {
            stop(pid);
            cr_assert_fail("%s %s %s hung: no exit in %d ms", argv[0], argv[1] ? argv[1] : "",
                           argv[1] && argv[2] ? argv[2] : "", e2e_cmd_timeout_ms);
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    c.out = h_slurp(out, NULL);
    c.err = h_slurp(err, NULL);
    cr_assert(c.out && c.err);
    unlink(out);
    unlink(err);
    return c;
}

/* build/closewatch ARGS... (NULL-terminated), without the preload. */
static struct cmd cw_v(const char *dir, const char *const *args)
{
    char *argv[64];
    int n = 0;
    argv[n++] = (char *)h_path("closewatch");
    while (*args && n < 63)
        argv[n++] = (char *)*args++;
    argv[n] = NULL;
    return run_argv(dir, argv, NULL, 0, NULL);
}
#define CW(dir, ...) cw_v(dir, (const char *const[]){__VA_ARGS__, NULL})

static const char *fixture(const char *name)
{
    static char bufs[4][1024];
    static int next;
    char *b = bufs[next++ % 4];
    snprintf(b, sizeof bufs[0], "%s/fixtures/%s", h_build(), name);
    cr_assert_eq(access(b, X_OK), 0, "%s missing: build the fixtures with `make test`", b);
    return b;
}

/*
 * Starts argv in the background with stdout on a pipe (for h_read_line),
 * like h_spawn, but with stderr quiet (closewatch run's report) and tracked
 * for e2e_fini.
 */
static struct h_proc spawn_bg(char *const argv[], char *const env[], int preload,
                              const char *ring_dir)
{
    int pfd[2];
    cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* If the test process dies (timeout), do not outlive it: a fixture
         * waiting for a client would wait forever. */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        child_env(env, preload, ring_dir);
        dup2(pfd[1], 1);
        redirect(2, "/dev/null", O_WRONLY);
        execv(argv[0], argv);
        _exit(127);
    }
    close(pfd[1]);
    e2e_track(pid);
    return (struct h_proc){.pid = pid, .out_fd = pfd[0]};
}

/* Reads lines until one starts with prefix; returns the rest after it. */
static const char *expect_line(struct h_proc *p, const char *prefix)
{
    static char line[512];
    uint64_t end = h_now_ms() + COND_TIMEOUT_MS;
    while (h_now_ms() < end) {
        cr_assert(h_read_line(p, line, sizeof line, (int)(end - h_now_ms())),
                  "no line starting with '%s' from pid %d", prefix, (int)p->pid);
        if (!strncmp(line, prefix, strlen(prefix)))
            return line + strlen(prefix);
    }
    cr_assert_fail("no line starting with '%s' in time", prefix);
    return NULL;
}

static int wait_exit(struct h_proc *p)
{
    int st = h_wait(p, CMD_TIMEOUT_MS);
    e2e_untrack(p->pid);
    cr_assert_neq(st, -1, "pid %d did not exit in time", (int)p->pid);
    cr_assert(WIFEXITED(st), "pid %d died (status 0x%x)", (int)p->pid, st);
    return WEXITSTATUS(st);
}

/* ---- reports and stacks ------------------------------------------------------ */

static struct jv *parse_or_fail(const char *text, const char *what)
{
    char err[256];
    cr_assert_not_null(text, "%s: no text", what);
    struct jv *v = jq_parse(text, err, sizeof err);
    cr_assert_not_null(v, "%s is not valid JSON: %s\n%.2000s", what, err, text);
    return v;
}

static struct jv *parse_file(const char *path)
{
    char *text = h_slurp(path, NULL);
    cr_assert_not_null(text, "%s: %s", path, strerror(errno));
    struct jv *v = parse_or_fail(text, path);
    free(text);
    return v;
}

/* Whether a stack (array of frames) has function fn in a file ending with
 * file_suffix at a real line. */
static int stack_has(const struct jv *stack, const char *fn, const char *file_suffix)
{
    for (int i = 0; i < jq_len(stack, NULL); i++) {
        const struct jv *f = jq_get(stack, NULL)->item[i];
        const char *func = jq_str(f, "function"), *file = jq_str(f, "file");
        if (func && !strcmp(func, fn) && ends_with(file, file_suffix) && jq_num(f, "line") > 0)
            return 1;
    }
    return 0;
}

/* Number of findings of kind (NULL: any) with pid (0: any). */
static int count_findings(const struct jv *doc, const char *kind, int pid)
{
    int n = 0;
    for (int i = 0; i < jq_len(doc, "findings"); i++) {
        const struct jv *f = jq_get(doc, "findings")->item[i];
        if ((!kind || !strcmp(jq_str(f, "kind"), kind)) && (!pid || jq_num(f, "pid") == pid))
            n++;
    }
    return n;
}

/* The first finding of kind, failing the test if there is none. */
static const struct jv *finding_of(const struct jv *doc, const char *kind)
{
    for (int i = 0; i < jq_len(doc, "findings"); i++) {
        const struct jv *f = jq_get(doc, "findings")->item[i];
        if (!strcmp(jq_str(f, "kind"), kind))
            return f;
    }
    cr_assert_fail("no %s finding in the report", kind);
    return NULL;
}

/* Runs a self-contained fixture under plain LD_PRELOAD in dir, waits for
 * it, and returns the path of its (only) ring. */
static void fixture_ring(const char *dir, char *const argv[], char *const env[], char *ring,
                         size_t len)
{
    struct h_proc p = spawn_bg(argv, env, 1, dir);
    pid_t pid = p.pid;
    /* Drain stdout so a chatty fixture cannot block on a full pipe. */
    char line[512];
    while (h_read_line(&p, line, sizeof line, COND_TIMEOUT_MS))
        ;
    cr_assert_eq(wait_exit(&p), 0, "%s failed", argv[0]);
    char paths[4][512];
    cr_assert_eq(h_rings(dir, pid, paths, 4), 1, "expected one ring of pid %d in %s", (int)pid,
                 dir);
    snprintf(ring, len, "%s", paths[0]);
}

/* A ring with two CLOSE_WAIT leaks: demo_server serving two clients and
 * staying up `linger` (atof) seconds. */
static void demo_ring(const char *dir, const char *linger, char *ring, size_t len)
{
    char *argv[] = {(char *)fixture("demo_server"), "2", (char *)linger, NULL};
    fixture_ring(dir, argv, NULL, ring, len);
}

/* A ring of a correct server: one connection, read to EOF, closed. */
static void clean_ring(const char *dir, char *const env[], char *ring, size_t len)
{
    char *argv[] = {(char *)fixture("e2e_server"), "clean", "0", "0", NULL};
    fixture_ring(dir, argv, env, ring, len);
}

/* Polls a live JSON report of pid until it has at least `want` findings. */
static struct jv *poll_live_report(const char *dir, int pid, int want)
{
    char pidarg[16], dirarg[1024];
    snprintf(pidarg, sizeof pidarg, "%d", pid);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    uint64_t end = h_now_ms() + COND_TIMEOUT_MS;
    for (;;) {
        struct cmd c = CW(dir, "report", "--format=json", "--grace=0", dirarg, pidarg);
        int code = exit_code(&c);
        cr_assert(code == 0 || code == 1, "live report failed (%d): %s", code, c.err);
        struct jv *doc = parse_or_fail(c.out, "live report");
        cmd_free(&c);
        if (jq_len(doc, "findings") >= want)
            return doc;
        jq_free(doc);
        cr_assert(h_now_ms() < end, "pid %d: no finding in the live report in time", pid);
        /* Between polls of a condition, not a synchronisation sleep. */
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
}

/* ================================================================================
 * suite jsonq: the parser the e2e tests trust
 * ================================================================================ */

Test(jsonq, parses_valid_documents)
{
    // clang-format off
    static const char *const ok[] = {
        "{}", "[]", " [ ] ", "0", "-0", "1.5", "-0.5e+10", "2E-3", "true", "false", "null",
        "\"\"", "{\"a\":{\"b\":[1,2,{\"c\":null}]}}", "\t\r\n[1,\"x\",true]\n",
        "[\"\\u00fc\\ud83d\\ude00\", \"caf\xc3\xa9\"]"};
    // clang-format on
    char err[128];
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        struct jv *v = jq_parse(ok[i], err, sizeof err);
        cr_assert_not_null(v, "rejected valid %s: %s", ok[i], err);
        jq_free(v);
    }
}

Test(jsonq, decodes_values_and_escapes)
{
    char err[128];
    struct jv *v = jq_parse("{\"s\":\"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041\\u00e9\\ud83d\\ude00\","
                            "\"n\":-12.5e1,\"t\":true,\"f\":false,\"z\":null,\"a\":[10,20]}",
                            err, sizeof err);
    cr_assert_not_null(v, "%s", err);
    cr_assert_str_eq(jq_str(v, "s"), "a\"\\/\b\f\n\r\tA\xc3\xa9\xf0\x9f\x98\x80");
    cr_assert_eq(jq_num(v, "n"), -125.0);
    cr_assert_eq(jq_bool(v, "t"), 1);
    cr_assert_eq(jq_bool(v, "f"), 0);
    cr_assert(jq_is_null(v, "z"));
    cr_assert_eq(jq_len(v, "a"), 2);
    cr_assert_eq(jq_num(v, "a.1"), 20.0);
    cr_assert_eq(jq_len(v, NULL), 6);
    /* Missing steps and wrong types answer "absent", never crash. */
    cr_assert_null(jq_get(v, "a.2"));
    cr_assert_null(jq_get(v, "a.x"));
    cr_assert_null(jq_get(v, "s.0"));
    cr_assert_null(jq_get(v, "nope.deeper"));
    cr_assert_null(jq_str(v, "n"));
    cr_assert(isnan(jq_num(v, "s")));
    cr_assert_eq(jq_bool(v, "z"), -1);
    cr_assert_eq(jq_len(v, "t"), -1);
    cr_assert(!jq_is_null(v, "missing"));
    jq_free(v);

    /* \u0000 is a character like any other: it is kept, with the length. */
    v = jq_parse("\"a\\u0000b\"", err, sizeof err);
    cr_assert_not_null(v, "%s", err);
    cr_assert_eq(v->len, 3);
    cr_assert_eq(memcmp(v->str, "a\0b", 3), 0);
    jq_free(v);
}

Test(jsonq, rejects_invalid_documents)
{
    // clang-format off
    static const char *const bad[] = {
        "", " ", "{", "}", "[", "[1,]", "[,1]", "{\"a\":1,}", "{'a':1}", "{a:1}", "{\"a\" 1}",
        "{1:2}", "[1 2]", "[01]", "[1.]", "[.5]", "[+1]", "[-]", "[1e]", "[1e+]", "[0x10]",
        "[NaN]", "[Infinity]", "[-Infinity]", "nul", "truex", "True", "\"abc", "\"\\x\"",
        "\"\\u12\"", "\"\\u12G4\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"",
        "\"a\tb\"", "\"a\nb\"", "\"\x01\"", "[1] x", "{} {}", "[1]]", "\"\xc3\x28\"",
        "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xff\"",
        "{\"a\":1,\"a\":2}", "\f[]", "[1,\v2]", "/* c */ []"};
    // clang-format on
    char err[128];
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        struct jv *v = jq_parse(bad[i], err, sizeof err);
        cr_assert_null(v, "accepted invalid JSON: %s", bad[i]);
        cr_assert(strstr(err, "offset "), "no error message for %s", bad[i]);
    }
    /* A NUL byte inside the text is trailing garbage, not the end. */
    cr_assert_null(jq_parse_n("[1]\0", 4, err, sizeof err));
    cr_assert_not_null(strstr(err, "trailing garbage"), "%s", err);

    /* Nesting is bounded instead of recursing without limit. */
    char deep[2 * 300 + 1];
    memset(deep, '[', 300);
    memset(deep + 300, ']', 300);
    deep[600] = 0;
    cr_assert_null(jq_parse(deep, err, sizeof err));
    cr_assert_not_null(strstr(err, "nested deeper"), "%s", err);
    deep[300 - 200] = 0; /* 100 levels, unbalanced: still an error */
    cr_assert_null(jq_parse(deep, err, sizeof err));
}

/* ================================================================================
 * suite e2e
 * ================================================================================ */

/* 1. A leaking server: N close_wait findings with the right stacks. */
Test(e2e, leaking_server_close_wait_with_stacks, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("leak");
    char dirarg[1024], outarg[1024], out[768];
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(out, sizeof out, "%s/report.json", dir);
    snprintf(outarg, sizeof outarg, "-o%s", out);
    const int n = 3;
    struct cmd c = CW(dir, "run", dirarg, "--grace=0.2", "--format=json", outarg, "--",
                      fixture("demo_server"), "3", "0.4");
    /* Findings, but no --error-exitcode: the program's own status (0). */
    cr_assert_eq(exit_code(&c), 0, "stderr: %s", c.err);
    cmd_free(&c);

    struct jv *doc = parse_file(out);
    cr_assert_str_eq(jq_str(doc, "schema"), "closewatch-report");
    cr_assert_eq(jq_num(doc, "version"), 1);
    cr_assert_str_eq(jq_str(doc, "tool.name"), "closewatch");
    cr_assert_eq(jq_len(doc, "processes"), 1);
    int pid = (int)jq_num(doc, "processes.0.pid");
    cr_assert_str_eq(jq_str(doc, "processes.0.state"), "exited");
    cr_assert_eq(jq_bool(doc, "processes.0.backtraces"), 1);

    cr_assert_eq(jq_len(doc, "findings"), n);
    int fds[8];
    for (int i = 0; i < n; i++) {
        const struct jv *f = jq_get(doc, "findings")->item[i];
        cr_assert_str_eq(jq_str(f, "kind"), "close_wait");
        cr_assert_eq(jq_num(f, "pid"), pid);
        cr_assert_str_eq(jq_str(f, "eof"), "observed");
        cr_assert_str_eq(jq_str(f, "eof_how"), "read");
        cr_assert_geq(jq_num(f, "eof_count"), 1);
        cr_assert_eq(jq_bool(f, "closed"), 0);
        cr_assert(jq_is_null(f, "close_how"));
        cr_assert_str_eq(jq_str(f, "tcp_state"), "CLOSE_WAIT");
        cr_assert_eq(jq_bool(f, "suppressed"), 0);
        cr_assert_geq(jq_num(f, "seconds_in_close_wait"), 0.2);
        cr_assert(!strncmp(jq_str(f, "local"), "127.0.0.1:", 10), "%s", jq_str(f, "local"));
        cr_assert(!strncmp(jq_str(f, "peer"), "127.0.0.1:", 10), "%s", jq_str(f, "peer"));
        cr_assert(stack_has(jq_get(f, "stacks.open"), "main", "/demo_server.c"),
                  "finding %d: no main() in demo_server.c in the open stack", i);
        cr_assert(stack_has(jq_get(f, "stacks.eof"), "handle_client", "/demo_server.c"),
                  "finding %d: no handle_client() in demo_server.c in the EOF stack", i);
        cr_assert_eq(jq_len(f, "stacks.close"), 0);
        cr_assert_geq(jq_len(f, "timeline"), 2);
        cr_assert_str_eq(jq_str(f, "timeline.0.event"), "open");
        fds[i] = (int)jq_num(f, "fd");
        for (int j = 0; j < i; j++)
            cr_assert_neq(fds[i], fds[j], "two findings for fd %d", fds[i]);
    }
    cr_assert_eq(jq_num(doc, "summary.by_kind.close_wait"), n);
    cr_assert_eq(jq_num(doc, "summary.findings"), n);
    cr_assert_eq(jq_num(doc, "summary.errors"), n);
    cr_assert_eq(jq_num(doc, "summary.suppressed"), 0);
    jq_free(doc);
}

/* 1b. run's exit status: the program's, or --error-exitcode with findings. */
Test(e2e, run_exit_status_program_or_error_exitcode, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("status");
    char dirarg[1024];
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);

    struct cmd c = CW(dir, "run", dirarg, "--grace=0.2", "--error-exitcode=42", "--",
                      fixture("demo_server"), "3", "0.3");
    cr_assert_eq(exit_code(&c), 42, "stderr: %s", c.err);
    cr_assert_not_null(strstr(c.err, "SUMMARY: closewatch: 3 findings"), "%s", c.err);
    cmd_free(&c);

    /* A program that fails on its own and leaks: its status wins without
     * --error-exitcode... */
    c = CW(dir, "run", dirarg, "--grace=0.2", "--", fixture("e2e_server"), "leak", "0.3", "3");
    cr_assert_eq(exit_code(&c), 3, "stderr: %s", c.err);
    cr_assert_not_null(strstr(c.err, "SUMMARY: closewatch: 1 finding"), "%s", c.err);
    cmd_free(&c);

    /* ...and --error-exitcode applies only when something was flagged. */
    c = CW(dir, "run", dirarg, "--grace=0.2", "--error-exitcode=42", "--", fixture("e2e_server"),
           "clean", "0", "5");
    cr_assert_eq(exit_code(&c), 5, "stderr: %s", c.err);
    cr_assert_not_null(strstr(c.err, "SUMMARY: closewatch: no leaked sockets"), "%s", c.err);
    cmd_free(&c);

    /* A program killed by a signal: 128 + the signal, as a shell reports it. */
    c = CW(dir, "run", dirarg, "--grace=0.2", "--", "/bin/sh", "-c", "kill -KILL $$");
    cr_assert_eq(exit_code(&c), 128 + SIGKILL, "stderr: %s", c.err);
    cmd_free(&c);
}

/* The sampler has written CLOSE_WAIT into fd's entry of pid's ring. */
struct sampled {
    struct cw_ring ring;
    int fd;
};

static int ring_says_close_wait(void *arg)
{
    struct sampled *s = arg;
    struct cw_fd_entry e;
    return cw_ring_fd(&s->ring, (uint32_t)s->fd, &e) && (e.sid & CW_SID_OPEN) &&
           e.tcp_state == CW_TCP_CLOSE_WAIT && e.close_wait_ns;
}

/*
 * idle_client connected to a listener of the test's, which then hangs up:
 * the client's socket is in CLOSE_WAIT and the client never looks at it.
 * Returns the client's fd; *fin_ms is when the test closed its end, *port
 * the port the client connected to.
 */
static int idle_client_hung_up(struct h_proc *p, struct h_ctl *ctl, char *const env[], int preload,
                               const char *dir, uint64_t *fin_ms, int *port)
{
    int lfd = h_listen(port);
    char portarg[16];
    snprintf(portarg, sizeof portarg, "%d", *port);
    h_ctl_open(ctl);
    char *argv[] = {(char *)fixture("idle_client"), portarg, ctl->arg, NULL};
    *p = spawn_bg(argv, env, preload, dir);
    h_ctl_spawned(ctl);
    int fd = atoi(expect_line(p, "connected "));
    int conn = accept(lfd, NULL, NULL);
    cr_assert_geq(conn, 0);
    *fin_ms = h_now_ms();
    close(conn);
    close(lfd);
    return fd;
}

/* 2. A client that never reads the EOF: eof "unread", live and post-mortem. */
Test(e2e, eof_unread_idle_client_live_and_post_mortem, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("unread");
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=50", NULL};
    struct h_proc p;
    struct h_ctl ctl;
    uint64_t fin_ms;
    int port;
    int fd = idle_client_hung_up(&p, &ctl, env, 1, dir, &fin_ms, &port);

    struct sampled s = {.fd = fd};
    h_open_ring(&s.ring, dir, p.pid);
    cr_assert(h_wait_for(ring_says_close_wait, &s, COND_TIMEOUT_MS),
              "the sampler never recorded CLOSE_WAIT for fd %d", fd);
    cw_ring_close(&s.ring);

    struct jv *doc = poll_live_report(dir, p.pid, 1);
    cr_assert_eq(jq_len(doc, "findings"), 1);
    cr_assert_str_eq(jq_str(doc, "findings.0.kind"), "close_wait");
    cr_assert_str_eq(jq_str(doc, "findings.0.eof"), "unread");
    cr_assert(jq_is_null(doc, "findings.0.eof_how"));
    cr_assert_eq(jq_num(doc, "findings.0.fd"), fd);
    cr_assert_eq(jq_num(doc, "findings.0.pid"), p.pid);
    cr_assert_str_eq(jq_str(doc, "findings.0.tcp_state"), "CLOSE_WAIT");
    cr_assert_str_eq(jq_str(doc, "processes.0.state"), "running");
    cr_assert(stack_has(jq_get(doc, "findings.0.stacks.open"), "main", "/idle_client.c"));
    cr_assert_eq(jq_len(doc, "findings.0.stacks.eof"), 0);
    jq_free(doc);

    /* The text report of the live process lists it too. */
    char pidarg[16], dirarg[1024], fdtext[32];
    snprintf(pidarg, sizeof pidarg, "%d", (int)p.pid);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(fdtext, sizeof fdtext, " fd %d ", fd);
    struct cmd c = CW(dir, "report", "--grace=0", dirarg, pidarg);
    cr_assert_eq(exit_code(&c), 1, "stderr: %s", c.err);
    cr_assert_not_null(strstr(c.out, "CLOSE_WAIT without close()"), "%s", c.out);
    cr_assert_not_null(strstr(c.out, "eof: unread"), "%s", c.out);
    cr_assert_not_null(strstr(c.out, fdtext), "%s", c.out);
    cmd_free(&c);

    /* Post-mortem: the ring alone still tells it. */
    pid_t pid = p.pid;
    h_ctl_release(&ctl);
    cr_assert_eq(wait_exit(&p), 0);
    char rings[4][512];
    cr_assert_eq(h_rings(dir, pid, rings, 4), 1);
    c = CW(dir, "report", "--format=json", "--grace=0", rings[0]);
    cr_assert_eq(exit_code(&c), 1, "stderr: %s", c.err);
    doc = parse_or_fail(c.out, "post-mortem report");
    cr_assert_eq(count_findings(doc, "close_wait", pid), 1);
    const struct jv *f = finding_of(doc, "close_wait");
    cr_assert_str_eq(jq_str(f, "eof"), "unread");
    cr_assert_eq(jq_num(f, "fd"), fd);
    cr_assert_str_eq(jq_str(doc, "processes.0.state"), "exited");
    jq_free(doc);
    cmd_free(&c);
}

/* 3. A correct server: nothing flagged, by report or by run. */
Test(e2e, correct_server_has_no_findings, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("good");
    char *argv[] = {(char *)fixture("good_server"), "3", NULL};
    struct h_proc p = spawn_bg(argv, NULL, 1, dir);
    int port = atoi(expect_line(&p, "port "));
    for (int i = 0; i < 3; i++) {
        int fd = h_connect(port);
        cr_assert_eq(write(fd, "hello", 5), 5);
        close(fd);
    }
    expect_line(&p, "served 3");
    pid_t pid = p.pid;
    cr_assert_eq(wait_exit(&p), 0);
    char rings[4][512];
    cr_assert_eq(h_rings(dir, pid, rings, 4), 1);

    struct cmd c = CW(dir, "report", "--format=json", "--grace=0.2", rings[0]);
    cr_assert_eq(exit_code(&c), 0, "stderr: %s\n%s", c.err, c.out);
    struct jv *doc = parse_or_fail(c.out, "report");
    cr_assert_eq(jq_len(doc, "findings"), 0);
    cr_assert_eq(jq_num(doc, "summary.findings"), 0);
    cr_assert_eq(jq_num(doc, "summary.errors"), 0);
    /* Not vacuous: the listener and three connections were recorded. */
    cr_assert_geq(jq_num(doc, "processes.0.sockets_seen"), 4);
    jq_free(doc);
    cmd_free(&c);

    c = CW(dir, "report", "--grace=0.2", rings[0]);
    cr_assert_eq(exit_code(&c), 0);
    cr_assert_not_null(strstr(c.out, "SUMMARY: closewatch: no leaked sockets in 1 process"), "%s",
                       c.out);
    cmd_free(&c);

    /* Under run, the program's status comes through unchanged. */
    char dirarg[1024], outarg[1024], out[768];
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(out, sizeof out, "%s/run.json", dir);
    snprintf(outarg, sizeof outarg, "--output=%s", out);
    c = CW(dir, "run", dirarg, "--grace=0.2", "--format=json", outarg, "--", fixture("e2e_server"),
           "clean", "0", "5");
    cr_assert_eq(exit_code(&c), 5, "stderr: %s", c.err);
    cmd_free(&c);
    doc = parse_file(out);
    cr_assert_eq(jq_len(doc, "findings"), 0);
    cr_assert_eq(jq_len(doc, "processes"), 1);
    jq_free(doc);
}

/* Runs `closewatch run --dir=DIR --format=json -o DIR/NAME.json OPTS -- ARGV`
 * to completion and returns the parsed report; *code gets the exit code. */
static struct jv *run_json(const char *dir, const char *name, const char *const *opts,
                           const char *const *argv, int *code)
{
    char dirarg[1024], outarg[1024], out[768];
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(out, sizeof out, "%s/%s.json", dir, name);
    snprintf(outarg, sizeof outarg, "-o%s", out);
    const char *args[48];
    int n = 0;
    args[n++] = "run";
    args[n++] = dirarg;
    args[n++] = "--format=json";
    args[n++] = outarg;
    while (*opts && n < 30)
        args[n++] = *opts++;
    args[n++] = "--";
    while (*argv && n < 47)
        args[n++] = *argv++;
    args[n] = NULL;
    struct cmd c = cw_v(dir, args);
    *code = exit_code(&c);
    cmd_free(&c);
    return parse_file(out);
}
#define OPTS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* The number N of the only file PREFIX<N>SUFFIX in dir, or -1. */
static int named_by_pid(const char *dir, const char *prefix, const char *suffix)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int found = -1, n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t pl = strlen(prefix);
        char *end;
        if (strncmp(e->d_name, prefix, pl))
            continue;
        long v = strtol(e->d_name + pl, &end, 10);
        if (end != e->d_name + pl && !strcmp(end, suffix)) {
            found = (int)v;
            n++;
        }
    }
    closedir(d);
    return n == 1 ? found : -1;
}

/* The path of the run directory `run` said it kept, from its stderr. */
static int kept_dir(const char *err, char *buf, size_t len)
{
    const char *k = err ? strstr(err, "ring files kept in ") : NULL;
    if (!k)
        return 0;
    k += strlen("ring files kept in ");
    size_t n = strcspn(k, " \n");
    snprintf(buf, len, "%.*s", (int)n, k);
    return 1;
}

/* 4. Closed, but only long after the EOF: late_close, not close_wait. */
Test(e2e, late_close_after_grace, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("late");
    int code;
    struct jv *doc = run_json(dir, "late", OPTS("--grace=0.2"),
                              OPTS(fixture("e2e_server"), "late", "0.5", "0"), &code);
    cr_assert_eq(code, 0);
    cr_assert_eq(jq_len(doc, "findings"), 1);
    const struct jv *f = finding_of(doc, "late_close");
    cr_assert_eq(jq_bool(f, "closed"), 1);
    cr_assert_str_eq(jq_str(f, "close_how"), "close");
    cr_assert_str_eq(jq_str(f, "eof"), "observed");
    cr_assert_gt(jq_num(f, "seconds_in_close_wait"), 0.2);
    cr_assert(stack_has(jq_get(f, "stacks.close"), "close_late", "/e2e_server.c"));
    cr_assert(stack_has(jq_get(f, "stacks.eof"), "serve_until_eof", "/e2e_server.c"));
    cr_assert(stack_has(jq_get(f, "stacks.open"), "accept_one", "/e2e_server.c"));
    cr_assert_eq(jq_num(doc, "summary.by_kind.late_close"), 1);
    cr_assert_eq(jq_num(doc, "summary.by_kind.close_wait"), 0);
    const char *ring = jq_str(doc, "processes.0.ring");
    cr_assert_not_null(ring);

    /* The same life with a grace longer than the delay is fine. */
    struct cmd c = CW(dir, "report", "--format=json", "--grace=3", ring);
    cr_assert_eq(exit_code(&c), 0, "%s", c.out);
    struct jv *relaxed = parse_or_fail(c.out, "report --grace=3");
    cr_assert_eq(jq_len(relaxed, "findings"), 0);
    jq_free(relaxed);
    cmd_free(&c);
    jq_free(doc);
}

/* 5. read()==0 over and over: eof_spin from --spin-threshold on. */
Test(e2e, eof_spin_counts_reads, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("spin");
    char dirarg[1024], outarg[1024], out[768];
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(out, sizeof out, "%s/spin.json", dir);
    snprintf(outarg, sizeof outarg, "-o%s", out);
    char *argv[] = {(char *)h_path("closewatch"),   "run",           dirarg, "--grace=0.2",
                    "--spin-threshold=50",          "--format=json", outarg, "--",
                    (char *)fixture("spin_server"), "200",           NULL};
    struct h_proc p = spawn_bg(argv, NULL, 0, NULL);
    int port = atoi(expect_line(&p, "port "));
    int c = h_connect(port);
    close(c);
    int fd = atoi(expect_line(&p, "spun "));
    cr_assert_eq(wait_exit(&p), 0);

    struct jv *doc = parse_file(out);
    cr_assert_eq(count_findings(doc, "eof_spin", 0), 1);
    const struct jv *f = finding_of(doc, "eof_spin");
    cr_assert_geq(jq_num(f, "eof_count"), 50);
    cr_assert_leq(jq_num(f, "eof_count"), 200);
    cr_assert_eq(jq_num(f, "fd"), fd);
    cr_assert(stack_has(jq_get(f, "stacks.open"), "main", "/spin_server.c"));
    cr_assert_eq(jq_num(doc, "summary.by_kind.eof_spin"), 1);

    /* Below the threshold it is not a spin. */
    struct cmd r = CW(dir, "report", "--format=json", "--grace=0.2", "--spin-threshold=1000",
                      jq_str(doc, "processes.0.ring"));
    struct jv *calm = parse_or_fail(r.out, "report --spin-threshold=1000");
    cr_assert_eq(count_findings(calm, "eof_spin", 0), 0);
    cr_assert_eq(exit_code(&r), 0, "%s", r.out);
    jq_free(calm);
    cmd_free(&r);
    jq_free(doc);
}

/* 6. close() twice: double_close, told by where the second close was. */
Test(e2e, double_close_has_close_stack, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("dclose");
    char dirarg[1024], outarg[1024], out[768];
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(out, sizeof out, "%s/dc.json", dir);
    snprintf(outarg, sizeof outarg, "-o%s", out);
    /* dup_matrix's stdout lands in c.out: the report goes to -o. */
    struct cmd c =
        CW(dir, "run", dirarg, "--grace=0.2", "--format=json", outarg, "--", fixture("dup_matrix"));
    cr_assert_eq(exit_code(&c), 0, "stderr: %s", c.err);
    const char *line = strstr(c.out, "double_close ");
    cr_assert_not_null(line, "%s", c.out);
    int fd = atoi(line + strlen("double_close "));
    cmd_free(&c);

    struct jv *doc = parse_file(out);
    cr_assert_eq(count_findings(doc, "double_close", 0), 1);
    const struct jv *f = finding_of(doc, "double_close");
    cr_assert_eq(jq_num(f, "fd"), fd);
    cr_assert(stack_has(jq_get(f, "stacks.close"), "main", "/dup_matrix.c"),
              "no main() in dup_matrix.c in the close stack");
    cr_assert_eq(jq_num(doc, "summary.by_kind.double_close"), 1);
    jq_free(doc);
}

/* 7a. fork per connection, the child leaks: blame the child, not the parent. */
Test(e2e, forking_server_leak_is_the_childs, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("forkleak");
    char dirarg[1024], outarg[1024], out[768];
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(out, sizeof out, "%s/fork.json", dir);
    snprintf(outarg, sizeof outarg, "-o%s", out);
    char *argv[] = {(char *)h_path("closewatch"),
                    "run",
                    dirarg,
                    "--grace=0.2",
                    "--format=json",
                    outarg,
                    "--",
                    (char *)fixture("e2e_server"),
                    "fork-leak",
                    "0.4",
                    "0",
                    NULL};
    struct h_proc p = spawn_bg(argv, NULL, 0, NULL);
    int port = atoi(expect_line(&p, "port "));
    int c = h_connect(port);
    cr_assert_eq(write(c, "hello", 5), 5);
    /* Hang up only once the parent's copy is closed. */
    expect_line(&p, "parent closed ");
    close(c);
    int child = atoi(expect_line(&p, "child "));
    cr_assert_eq(wait_exit(&p), 0);

    struct jv *doc = parse_file(out);
    cr_assert_eq(jq_len(doc, "processes"), 2, "both images in one run directory");
    int parent = 0;
    for (int i = 0; i < 2; i++) {
        const struct jv *proc = jq_get(doc, "processes")->item[i];
        if (jq_num(proc, "pid") == child)
            parent = (int)jq_num(proc, "ppid");
    }
    cr_assert_gt(parent, 0, "no process with the child's pid %d", child);
    cr_assert_neq(parent, child);
    int child_seen = 0;
    for (int i = 0; i < 2; i++)
        if (jq_num(jq_get(doc, "processes")->item[i], "pid") == child)
            child_seen = (int)jq_num(jq_get(doc, "processes")->item[i], "sockets_seen");
    /* The child must hold two inherited sockets: the listener and the
     * connection (which the parent closes right after fork()). */
    cr_assert_eq(count_findings(doc, "close_wait", 0), 1,
                 "%d close_wait findings; the child's ring saw %d sockets (expected 2: the "
                 "listener and the inherited connection)",
                 count_findings(doc, "close_wait", 0), child_seen);
    cr_assert_eq(count_findings(doc, "close_wait", child), 1);
    cr_assert_eq(count_findings(doc, NULL, parent), 0, "a finding blamed on the parent");
    const struct jv *f = finding_of(doc, "close_wait");
    cr_assert_str_eq(jq_str(f, "eof"), "observed");
    cr_assert(stack_has(jq_get(f, "stacks.eof"), "serve_until_eof", "/e2e_server.c"));
    /* The child inherited it: the open stack is the parent's accept, kept
     * in the child's own ring. */
    cr_assert_str_eq(jq_str(f, "origin"), "inherited");
    cr_assert(stack_has(jq_get(f, "stacks.open"), "accept_one", "/e2e_server.c"),
              "the inherited socket has no open stack from the parent");
    jq_free(doc);
}

/* 7a'. pre-fork: the child accepts on the listener the parent made. The
 * finding's listener stack is the parent's, from the parent's ring. */
Test(e2e, prefork_child_leak_names_the_parents_listener, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("prefork");
    char dirarg[1024], outarg[1024], out[768];
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(out, sizeof out, "%s/prefork.json", dir);
    snprintf(outarg, sizeof outarg, "-o%s", out);
    char *argv[] = {(char *)h_path("closewatch"),
                    "run",
                    dirarg,
                    "--grace=0.2",
                    "--format=json",
                    outarg,
                    "--",
                    (char *)fixture("e2e_server"),
                    "prefork-leak",
                    "0.4",
                    "0",
                    NULL};
    struct h_proc p = spawn_bg(argv, NULL, 0, NULL);
    int port = atoi(expect_line(&p, "port "));
    int c = h_connect(port);
    cr_assert_eq(write(c, "hello", 5), 5);
    close(c);
    int child = atoi(expect_line(&p, "child "));
    cr_assert_eq(wait_exit(&p), 0);

    struct jv *doc = parse_file(out);
    cr_assert_eq(count_findings(doc, "close_wait", child), 1, "the child's leak");
    const struct jv *f = finding_of(doc, "close_wait");
    cr_assert_str_eq(jq_str(f, "origin"), "accept");
    cr_assert(stack_has(jq_get(f, "stacks.open"), "accept_one", "/e2e_server.c"));
    cr_assert_geq(jq_num(f, "listener_fd"), 0);
    cr_assert(stack_has(jq_get(f, "stacks.listener"), "main", "/e2e_server.c"),
              "the inherited listener has no open stack from the parent");
    jq_free(doc);
}

/* 7b. fork per connection done right: nothing, in any of the processes. */
Test(e2e, forking_server_correct_is_clean, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("forkok");
    char dirarg[1024], outarg[1024], out[768];
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(out, sizeof out, "%s/fork.json", dir);
    snprintf(outarg, sizeof outarg, "-o%s", out);
    char *argv[] = {(char *)h_path("closewatch"),
                    "run",
                    dirarg,
                    "--grace=0.2",
                    "--format=json",
                    outarg,
                    "--",
                    (char *)fixture("forking_server"),
                    "2",
                    NULL};
    struct h_proc p = spawn_bg(argv, NULL, 0, NULL);
    int port = atoi(expect_line(&p, "port "));
    for (int i = 0; i < 2; i++) {
        int c = h_connect(port);
        cr_assert_eq(write(c, "hello", 5), 5);
        expect_line(&p, "child ");
        close(c);
    }
    expect_line(&p, "reaped 2");
    cr_assert_eq(wait_exit(&p), 0);

    struct jv *doc = parse_file(out);
    cr_assert_eq(jq_len(doc, "processes"), 3, "the parent and two children");
    cr_assert_eq(jq_len(doc, "findings"), 0);
    cr_assert_eq(jq_num(doc, "summary.errors"), 0);
    jq_free(doc);
    /* Clean: run removed its directory. */
    cr_assert_eq(count_entries(dir, "closewatch-run-"), 0);
}

/* 8. shutdown(SHUT_WR) after the EOF: half-closed by us, not CLOSE_WAIT. */
Test(e2e, shutdown_after_eof_is_not_close_wait, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("shut");
    int code;
    struct jv *doc = run_json(dir, "shut", OPTS("--grace=0.2"),
                              OPTS(fixture("e2e_server"), "shutdown", "0.4", "0"), &code);
    cr_assert_eq(code, 0);
    cr_assert_eq(jq_num(doc, "summary.by_kind.close_wait"), 0);
    cr_assert_eq(jq_len(doc, "findings"), 0);
    /* The fd really was still open at exit. */
    cr_assert_eq(jq_num(doc, "processes.0.sockets_open"), 1);
    jq_free(doc);

    /* The control: the same program without the shutdown() is flagged. */
    doc = run_json(dir, "leak", OPTS("--grace=0.2"),
                   OPTS(fixture("e2e_server"), "leak", "0.4", "0"), &code);
    cr_assert_eq(code, 0);
    cr_assert_eq(jq_num(doc, "summary.by_kind.close_wait"), 1);
    cr_assert_eq(jq_num(doc, "processes.0.sockets_open"), 1);
    jq_free(doc);
}

/* 9. A live process that never had the preload: the kernel's view only. */
Test(e2e, live_pid_without_ring_kernel_view, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("noring");
    struct h_proc p;
    struct h_ctl ctl;
    uint64_t fin_ms;
    int port;
    int fd = idle_client_hung_up(&p, &ctl, NULL, 0, NULL, &fin_ms, &port);

    struct jv *doc = poll_live_report(dir, p.pid, 1);
    cr_assert_eq(jq_len(doc, "findings"), 1);
    const struct jv *f = finding_of(doc, "close_wait");
    cr_assert_str_eq(jq_str(f, "eof"), "unknown");
    cr_assert_eq(jq_num(f, "fd"), fd);
    cr_assert_eq(jq_num(f, "pid"), p.pid);
    cr_assert_str_eq(jq_str(f, "tcp_state"), "CLOSE_WAIT");
    char peer[32];
    snprintf(peer, sizeof peer, "127.0.0.1:%d", port);
    cr_assert_str_eq(jq_str(f, "peer"), peer);
    cr_assert_eq(jq_len(f, "stacks.open"), 0);
    cr_assert_eq(jq_len(f, "stacks.eof"), 0);
    cr_assert_eq(jq_len(f, "stacks.close"), 0);
    cr_assert_eq(jq_len(doc, "processes"), 1);
    cr_assert_eq(jq_bool(doc, "processes.0.backtraces"), 0);
    cr_assert(jq_is_null(doc, "processes.0.ring"));
    jq_free(doc);

    char pidarg[16], dirarg[1024];
    snprintf(pidarg, sizeof pidarg, "%d", (int)p.pid);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    struct cmd c = CW(dir, "report", "--grace=0", dirarg, pidarg);
    cr_assert_eq(exit_code(&c), 1, "stderr: %s", c.err);
    cr_assert_not_null(strstr(c.out, "no backtraces exist"), "%s", c.out);
    cr_assert_not_null(strstr(c.out, "did not run under libclosewatch.so"), "%s", c.out);
    /* A dynamically linked C program: the preload would see it; no talk of
     * the kernel recorder, which is for Go and static programs. */
    cr_assert_null(strstr(c.out, "CAP_BPF"), "%s", c.out);
    cmd_free(&c);

    h_ctl_release(&ctl);
    cr_assert_eq(wait_exit(&p), 0);
}

/* 10a. report's exit status: 0 clean, 1 findings, --error-exitcode. */
Test(e2e, report_exit_codes, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("codes");
    char clean[512], leaky[512];
    clean_ring(dir, NULL, clean, sizeof clean);
    demo_ring(dir, "0.3", leaky, sizeof leaky);

    struct cmd c = CW(dir, "report", "--grace=0.2", clean);
    cr_assert_eq(exit_code(&c), 0, "%s%s", c.out, c.err);
    cmd_free(&c);
    c = CW(dir, "report", "--grace=0.2", leaky);
    cr_assert_eq(exit_code(&c), 1, "%s%s", c.out, c.err);
    cmd_free(&c);
    c = CW(dir, "report", "--grace=0.2", "--error-exitcode=7", leaky);
    cr_assert_eq(exit_code(&c), 7, "%s%s", c.out, c.err);
    cmd_free(&c);
    /* Both together: one flagged is enough. */
    c = CW(dir, "report", "--grace=0.2", clean, leaky);
    cr_assert_eq(exit_code(&c), 1, "%s%s", c.out, c.err);
    cmd_free(&c);
}

/* The first line of text. */
static void first_line(const char *text, char *buf, size_t len)
{
    snprintf(buf, len, "%.*s", (int)strcspn(text, "\n"), text);
}

/* 10b. Usage and input errors: 2, with a message that names the culprit. */
Test(e2e, usage_and_input_errors_exit_2, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("usage");
    char line[1024];

    struct cmd c = CW(dir, "report", "--bogus-option", "x.ring");
    cr_assert_eq(exit_code(&c), 2);
    first_line(c.err, line, sizeof line);
    cr_assert(!strncmp(line, "closewatch: ", 12) && strstr(line, "--bogus-option"), "%s", c.err);
    cr_assert_null(strstr(c.err, "usage:"), "the whole usage text for one bad option:\n%s", c.err);
    cr_assert_eq(c.out[0], 0);
    cmd_free(&c);

    /* A grace too large for the model's nanoseconds must not wrap around
     * to 0 and flag everything: refused (2) or honoured (0), never 1. */
    char late[512];
    char *late_argv[] = {(char *)fixture("e2e_server"), "late", "0.3", "0", NULL};
    fixture_ring(dir, late_argv, NULL, late, sizeof late);
    static const char *const huge[] = {"--grace=1e20", "--grace=inf", "--grace=1e300"};
    for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
        c = CW(dir, "report", huge[i], late);
        int code = exit_code(&c);
        cr_assert(code == 0 || code == 2, "%s: exit %d\n%s", huge[i], code, c.out);
        cmd_free(&c);
    }
    c = CW(dir, "report", "--grace=0.1", late);
    cr_assert_eq(exit_code(&c), 1, "the control: a late close at grace 0.1\n%s", c.out);
    cmd_free(&c);

    c = CW(dir, "report", "--grace=soon", "x.ring");
    cr_assert_eq(exit_code(&c), 2);
    first_line(c.err, line, sizeof line);
    cr_assert(strstr(line, "--grace") && strstr(line, "soon"), "%s", c.err);
    cmd_free(&c);

    c = CW(dir, "run", "--format=yaml", "--", "/bin/true");
    cr_assert_eq(exit_code(&c), 2);
    first_line(c.err, line, sizeof line);
    cr_assert(strstr(line, "--format") && strstr(line, "yaml"), "%s", c.err);
    cmd_free(&c);

    char missing[1024];
    snprintf(missing, sizeof missing, "%s/no-such-file.ring", dir);
    c = CW(dir, "report", missing);
    cr_assert_eq(exit_code(&c), 2);
    cr_assert_not_null(strstr(c.err, missing), "%s", c.err);
    cmd_free(&c);

    /* pid_max itself is never handed out. */
    char *pm = h_slurp("/proc/sys/kernel/pid_max", NULL);
    cr_assert_not_null(pm);
    char pidarg[32];
    snprintf(pidarg, sizeof pidarg, "%ld", atol(pm));
    free(pm);
    c = CW(dir, "report", pidarg);
    cr_assert_eq(exit_code(&c), 2);
    cr_assert_not_null(strstr(c.err, "no such process"), "%s", c.err);
    cr_assert_not_null(strstr(c.err, pidarg), "%s", c.err);
    cmd_free(&c);

    c = CW(dir, "watch", pidarg, "--count=1");
    cr_assert_eq(exit_code(&c), 2);
    cr_assert_not_null(strstr(c.err, "no such process"), "%s", c.err);
    cmd_free(&c);
}

/* Copies a ring, keeping only `keep` bytes (0: all), and patches it. */
static void corrupt_copy(const char *from, const char *to, size_t keep, size_t off,
                         const void *patch, size_t plen)
{
    size_t len;
    char *data = h_slurp(from, &len);
    cr_assert_not_null(data);
    if (keep && keep < len)
        len = keep;
    if (plen)
        memcpy(data + off, patch, plen);
    spit(to, data, len);
    free(data);
}

/* 10c. Damaged rings: exit 2 and a message naming file and fault, no crash. */
Test(e2e, corrupt_rings_exit_2_without_crashing, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("corrupt");
    /* A small ring, so that copying it is cheap. */
    char *env[] = {"CLOSEWATCH_RING_MB=1", "CLOSEWATCH_MAX_FDS=1024", NULL};
    char ring[512];
    clean_ring(dir, env, ring, sizeof ring);

    struct {
        const char *name;
        size_t keep, off;
        const char *patch;
        size_t plen;
        const char *what; /* in the message */
    } cases[] = {
        {"magic.ring", 0, 0, "NOTARING", 8, "magic"},
        {"short.ring", 100, 0, NULL, 0, "truncated"},
        {"version.ring", 0, 8, "\x63\0\0\0", 4, "version 99"},
    };
    /* The control: an unchanged copy reads fine. */
    char copy[1024];
    snprintf(copy, sizeof copy, "%s/copy.ring", dir);
    corrupt_copy(ring, copy, 0, 0, NULL, 0);
    struct cmd c = CW(dir, "report", "--grace=0.2", copy);
    cr_assert_eq(exit_code(&c), 0, "%s", c.err);
    cmd_free(&c);

    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char bad[1024];
        snprintf(bad, sizeof bad, "%s/%s", dir, cases[i].name);
        corrupt_copy(ring, bad, cases[i].keep, cases[i].off, cases[i].patch, cases[i].plen);
        static const char *const cmds[][2] = {
            {"report", NULL}, {"report", "--format=json"}, {"dump", NULL}};
        for (size_t k = 0; k < 3; k++) {
            c = cmds[k][1] ? CW(dir, cmds[k][0], cmds[k][1], bad) : CW(dir, cmds[k][0], bad);
            cr_assert_eq(exit_code(&c), 2, "%s %s: %s", cmds[k][0], cases[i].name, c.err);
            cr_assert_not_null(strstr(c.err, bad), "%s: message without the file: %s",
                               cases[i].name, c.err);
            cr_assert_not_null(strstr(c.err, cases[i].what), "%s: message without '%s': %s",
                               cases[i].name, cases[i].what, c.err);
            cmd_free(&c);
        }
    }
}

/* 10d. Something named like a ring that is not a file must be refused at
 * once: opening a FIFO for reading blocks until a writer comes, and anyone
 * can put one into a shared ring directory such as /dev/shm. */
Test(e2e, fifo_named_like_a_ring_does_not_hang, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("fifo");
    char fifo[1024], dirarg[1024];
    snprintf(fifo, sizeof fifo, "%s/closewatch.1.0.ring", dir);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0, "mkfifo: %s", strerror(errno));
    e2e_cmd_timeout_ms = 5000;

    struct cmd c = CW(dir, "report", fifo);
    cr_assert_eq(exit_code(&c), 2, "%s", c.err);
    cr_assert_not_null(strstr(c.err, fifo), "%s", c.err);
    cmd_free(&c);

    /* Scanning the directory skips it and goes on. */
    c = CW(dir, "report", dirarg);
    int code = exit_code(&c);
    cr_assert(code == 0 || code == 2, "exit %d: %s", code, c.err);
    cmd_free(&c);
}

/* 10i. A socket closed only by the process's teardown (an atexit handler,
 * after exit() or main's return) was leaked: close_wait, "closed only at
 * exit", in every format, as a live report would have said. The grace
 * still applies: closed at exit at once after the EOF is no finding. */
Test(e2e, closed_only_at_exit_is_close_wait, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("atexit");
    static const char *const modes[] = {"exit", "return"};
    for (int m = 0; m < 2; m++) {
        char ring[512];
        char *argv[] = {(char *)fixture("atexit_close"), (char *)modes[m], "0.4", NULL};
        fixture_ring(dir, argv, NULL, ring, sizeof ring);
        struct cmd c = CW(dir, "report", "--format=json", "--grace=0.2", ring);
        cr_assert_eq(exit_code(&c), 1, "%s: %s%s", modes[m], c.out, c.err);
        struct jv *doc = parse_or_fail(c.out, "report");
        cr_assert_eq(jq_len(doc, "findings"), 1, "%s: %s", modes[m], c.out);
        const struct jv *f = finding_of(doc, "close_wait");
        cr_assert_eq(jq_bool(f, "closed"), 1);
        cr_assert_eq(jq_bool(f, "closed_only_at_exit"), 1, "%s", modes[m]);
        cr_assert_geq(jq_num(f, "seconds_in_close_wait"), 0.35, "%s", modes[m]);
        cr_assert(stack_has(jq_get(f, "stacks.close"), "close_at_exit", "/atexit_close.c"),
                  "%s: the close stack is the atexit handler's", modes[m]);
        jq_free(doc);
        cmd_free(&c);
        if (m)
            continue;
        static const char *const formats[] = {"--format=text", "--format=markdown",
                                              "--format=sarif"};
        for (int k = 0; k < 3; k++) {
            c = CW(dir, "report", formats[k], "--grace=0.2", ring);
            cr_assert_eq(exit_code(&c), 1, "%s: %s", formats[k], c.err);
            cr_assert_not_null(strstr(c.out, "closed only at exit"), "%s:\n%s", formats[k], c.out);
            cr_assert_null(strstr(c.out, "late_close: 1"), "%s:\n%s", formats[k], c.out);
            cmd_free(&c);
        }
        /* Within the grace it is no finding, closed at exit or not. */
        c = CW(dir, "report", "--grace=1", ring);
        cr_assert_eq(exit_code(&c), 0, "%s", c.out);
        cmd_free(&c);
        unlink(ring);
    }

    /* A correct program: its atexit handler closes the socket at once. */
    char ring[512];
    char *argv[] = {(char *)fixture("atexit_close"), "exit", "0", NULL};
    fixture_ring(dir, argv, NULL, ring, sizeof ring);
    struct cmd c = CW(dir, "report", "--grace=0.2", ring);
    cr_assert_eq(exit_code(&c), 0, "a prompt close at exit was flagged:\n%s", c.out);
    cmd_free(&c);
}

/* The last non-empty line of text. */
static void last_line(const char *text, char *buf, size_t len)
{
    size_t n = strlen(text);
    while (n && text[n - 1] == '\n')
        n--;
    size_t start = n;
    while (start && text[start - 1] != '\n')
        start--;
    snprintf(buf, len, "%.*s", (int)(n - start), text + start);
}

/* 11. One leaking ring in all four formats, and -o with %p. */
Test(e2e, formats_of_one_leak, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("formats");
    char ring[512];
    /* argv is copied into every report: quotes, a backslash, a tab, a
     * control character and a byte that is not UTF-8 must all come out as
     * valid JSON (atof still reads 0.3). */
    demo_ring(dir, "0.3\xff\x01\"\\\t", ring, sizeof ring);

    struct cmd c = CW(dir, "report", "--grace=0.2", "--format=json", ring);
    cr_assert_eq(exit_code(&c), 1);
    struct jv *doc = parse_or_fail(c.out, "json report");
    cmd_free(&c);
    cr_assert_eq(jq_len(doc, "findings"), 2);
    int pid = (int)jq_num(doc, "processes.0.pid");
    const char *av = jq_str(doc, "processes.0.argv");
    cr_assert(av && strstr(av, "\x01\"\\\t"), "argv not kept: %s", av ? av : "(none)");
    /* Where the leak was opened, as the JSON says; the others must agree. */
    const struct jv *open = jq_get(doc, "findings.0.stacks.open");
    char where[1024] = "";
    for (int i = 0; i < jq_len(open, NULL) && !where[0]; i++) {
        const struct jv *fr = open->item[i];
        if (ends_with(jq_str(fr, "file"), "/demo_server.c"))
            snprintf(where, sizeof where, "%s:%d", jq_str(fr, "file"), (int)jq_num(fr, "line"));
    }
    cr_assert(where[0], "no demo_server.c frame in the open stack");
    jq_free(doc);

    c = CW(dir, "report", "--grace=0.2", ring);
    cr_assert_eq(exit_code(&c), 1);
    char line[1024];
    last_line(c.out, line, sizeof line);
    cr_assert(!strncmp(line, "SUMMARY: closewatch:", 20), "last line: %s", line);
    cr_assert_not_null(strstr(line, "2 findings"), "%s", line);
    cr_assert_not_null(strstr(c.out, where), "text report without %s:\n%s", where, c.out);
    cr_assert_not_null(strstr(c.out, "handle_client"), "%s", c.out);
    cmd_free(&c);

    c = CW(dir, "report", "--grace=0.2", "--format=markdown", ring);
    cr_assert_eq(exit_code(&c), 1);
    cr_assert_not_null(strstr(c.out, "\n| --- |"), "no table:\n%s", c.out);
    const char *fence = strstr(c.out, "\n```");
    cr_assert_not_null(fence, "no fenced code block:\n%s", c.out);
    cr_assert_not_null(strstr(fence + 4, "\n```"), "unclosed code block:\n%s", c.out);
    cr_assert_not_null(strstr(c.out, "handle_client"), "%s", c.out);
    cmd_free(&c);

    c = CW(dir, "report", "--grace=0.2", "--format=sarif", ring);
    cr_assert_eq(exit_code(&c), 1);
    struct jv *sarif = parse_or_fail(c.out, "sarif report");
    cmd_free(&c);
    cr_assert_str_eq(jq_str(sarif, "version"), "2.1.0");
    cr_assert_eq(jq_len(sarif, "runs.0.results"), 2);
    cr_assert_str_eq(jq_str(sarif, "runs.0.tool.driver.name"), "closewatch");
    cr_assert_str_eq(jq_str(sarif, "runs.0.results.0.ruleId"), "close_wait");
    const struct jv *loc = jq_get(sarif, "runs.0.results.0.locations.0.physicalLocation");
    cr_assert(ends_with(jq_str(loc, "artifactLocation.uri"), "demo_server.c"), "uri %s",
              jq_str(loc, "artifactLocation.uri"));
    cr_assert_gt(jq_num(loc, "region.startLine"), 0);
    jq_free(sarif);

    /* -o with %p: the file is named after the reported process. */
    char pattern[1024], expect[1024];
    snprintf(pattern, sizeof pattern, "-o%s/report-%%p.json", dir);
    snprintf(expect, sizeof expect, "%s/report-%d.json", dir, pid);
    c = CW(dir, "report", "--grace=0.2", "--format=json", pattern, ring);
    cr_assert_eq(exit_code(&c), 1, "%s", c.err);
    cr_assert_eq(c.out[0], 0, "the report went to stdout too: %s", c.out);
    cmd_free(&c);
    struct jv *named = parse_file(expect);
    cr_assert_eq(jq_num(named, "processes.0.pid"), pid);
    jq_free(named);
}

/* 12. Suppressions hide findings, count hits, and reject bad files. */
Test(e2e, suppressions_hide_and_count, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("supp");
    char ring[512];
    demo_ring(dir, "0.3", ring, sizeof ring);
    char supp[1024], supparg[1200];
    snprintf(supp, sizeof supp, "%s/rules.supp", dir);
    snprintf(supparg, sizeof supparg, "--suppressions=%s", supp);

    /* Rules match the stack that opened the socket (docs/closewatch.1): in
     * demo_server that is main(), where accept() is called. */
    const char *hide = "# demo_server's leaks are known\nclose_wait:main\n";
    spit(supp, hide, strlen(hide));
    struct cmd c = CW(dir, "report", "--grace=0.2", "--format=json", supparg, ring);
    cr_assert_eq(exit_code(&c), 0, "%s%s", c.out, c.err);
    struct jv *doc = parse_or_fail(c.out, "suppressed report");
    cmd_free(&c);
    cr_assert_eq(jq_num(doc, "summary.suppressed"), 2);
    cr_assert_eq(jq_num(doc, "summary.findings"), 0);
    cr_assert_eq(jq_num(doc, "summary.by_kind.close_wait"), 0);
    cr_assert_eq(jq_len(doc, "suppressions"), 1);
    cr_assert_str_eq(jq_str(doc, "suppressions.0.kind"), "close_wait");
    cr_assert_str_eq(jq_str(doc, "suppressions.0.pattern"), "main");
    cr_assert_eq(jq_num(doc, "suppressions.0.hits"), 2);
    for (int i = 0; i < jq_len(doc, "findings"); i++)
        cr_assert_eq(jq_bool(jq_get(doc, "findings")->item[i], "suppressed"), 1);
    jq_free(doc);

    /* The text report says so too. */
    c = CW(dir, "report", "--grace=0.2", supparg, ring);
    cr_assert_eq(exit_code(&c), 0);
    char line[1024];
    last_line(c.out, line, sizeof line);
    cr_assert_not_null(strstr(line, "2 suppressed"), "%s", line);
    cmd_free(&c);

    /* A function of another program hides nothing; neither does another kind. */
    const char *other = "close_wait:serve_until_eof\nlate_close:main\n";
    spit(supp, other, strlen(other));
    c = CW(dir, "report", "--grace=0.2", "--format=json", supparg, ring);
    cr_assert_eq(exit_code(&c), 1);
    doc = parse_or_fail(c.out, "report with unrelated rules");
    cmd_free(&c);
    cr_assert_eq(jq_num(doc, "summary.suppressed"), 0);
    cr_assert_eq(jq_num(doc, "summary.by_kind.close_wait"), 2);
    cr_assert_eq(jq_num(doc, "suppressions.0.hits"), 0);
    cr_assert_eq(jq_num(doc, "suppressions.1.hits"), 0);
    jq_free(doc);

    /* A bad rule: exit 2, FILE:LINE in the message. */
    const char *bad = "close_wait:main\n\nthis line has no colon\n";
    spit(supp, bad, strlen(bad));
    char where[1200];
    snprintf(where, sizeof where, "%s:3", supp);
    c = CW(dir, "report", "--grace=0.2", supparg, ring);
    cr_assert_eq(exit_code(&c), 2);
    cr_assert_not_null(strstr(c.err, where), "no %s in: %s", where, c.err);
    cmd_free(&c);
    const char *kind = "no_such_kind:main\n";
    spit(supp, kind, strlen(kind));
    snprintf(where, sizeof where, "%s:1", supp);
    c = CW(dir, "report", "--grace=0.2", supparg, ring);
    cr_assert_eq(exit_code(&c), 2);
    cr_assert_not_null(strstr(c.err, where), "no %s in: %s", where, c.err);
    cr_assert_not_null(strstr(c.err, "no_such_kind"), "%s", c.err);
    cmd_free(&c);
}

/* 13. watch on a live leak, dump of its ring after it exits. */
Test(e2e, watch_live_leak_and_dump_ring, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("watch");
    struct h_ctl ctl;
    h_ctl_open(&ctl);
    char *argv[] = {(char *)fixture("leaky_server"), ctl.arg, NULL};
    struct h_proc p = spawn_bg(argv, NULL, 1, dir);
    h_ctl_spawned(&ctl);
    int port = atoi(expect_line(&p, "port "));
    int c = h_connect(port);
    cr_assert_eq(write(c, "hello", 5), 5);
    close(c);
    int fd = atoi(expect_line(&p, "leaked "));

    char pidarg[16], dirarg[1024], fdline[64];
    snprintf(pidarg, sizeof pidarg, "%d", (int)p.pid);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(fdline, sizeof fdline, "\n  CLOSE_WAIT fd %d ", fd);
    struct cmd w = CW(dir, "watch", pidarg, "--count=1", "--interval=0.1", dirarg);
    cr_assert_eq(exit_code(&w), 0, "%s", w.err);
    cr_assert_not_null(strstr(w.out, " CLOSE_WAIT 1"), "no state count:\n%s", w.out);
    cr_assert_not_null(strstr(w.out, fdline), "no CLOSE_WAIT line for fd %d:\n%s", fd, w.out);
    cr_assert_not_null(strstr(w.out, " opened in main "), "no opening function:\n%s", w.out);
    cmd_free(&w);

    pid_t pid = p.pid;
    h_ctl_release(&ctl);
    cr_assert_eq(wait_exit(&p), 0);
    char rings[4][512];
    cr_assert_eq(h_rings(dir, pid, rings, 4), 1);
    struct cmd d = CW(dir, "dump", rings[0]);
    cr_assert_eq(exit_code(&d), 0, "%s", d.err);
    char fdentry[64];
    snprintf(fdentry, sizeof fdentry, "\n  fd %d sid ", fd);
    cr_assert_not_null(strstr(d.out, "fd table (sockets):"), "%s", d.out);
    cr_assert_not_null(strstr(d.out, fdentry), "no fd table entry for fd %d:\n%s", fd, d.out);
    cr_assert_not_null(strstr(d.out, "\nevents:\n"), "%s", d.out);
    cr_assert_not_null(strstr(d.out, " open "), "no open event:\n%s", d.out);
    cr_assert_not_null(strstr(d.out, " eof "), "no eof event:\n%s", d.out);
    cr_assert_not_null(strstr(d.out, "state exited"), "%s", d.out);
    cmd_free(&d);
}

/* 14. run removes its ring directory after a clean run, keeps it (and says
 * where) after findings, and always with --keep. */
Test(e2e, run_keeps_rings_only_when_needed, .timeout = 30)
{
    const char *dir = e2e_mkdtemp("keep");
    char dirarg[1024], kept[1024];
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);

    struct cmd c =
        CW(dir, "run", dirarg, "--grace=0.2", "--", fixture("e2e_server"), "clean", "0", "0");
    cr_assert_eq(exit_code(&c), 0, "%s", c.err);
    cr_assert(!kept_dir(c.err, kept, sizeof kept), "%s", c.err);
    cmd_free(&c);
    cr_assert_eq(count_entries(dir, "closewatch-run-"), 0, "a clean run left its directory");

    /* With findings (and the report in a file named by -o's %p). */
    char outarg[1024];
    snprintf(outarg, sizeof outarg, "--output=%s/run-%%p.txt", dir);
    c = CW(dir, "run", dirarg, "--grace=0.2", outarg, "--", fixture("e2e_server"), "leak", "0.3",
           "0");
    cr_assert_eq(exit_code(&c), 0, "%s", c.err);
    cr_assert(kept_dir(c.err, kept, sizeof kept), "run did not say where the rings are:\n%s",
              c.err);
    cr_assert_null(strstr(c.err, "SUMMARY"), "the report went to stderr too:\n%s", c.err);
    cmd_free(&c);
    int pid = named_by_pid(dir, "run-", ".txt");
    cr_assert_gt(pid, 0, "no run-PID.txt in %s", dir);
    char report[1024], mark[64];
    snprintf(report, sizeof report, "%s/run-%d.txt", dir, pid);
    snprintf(mark, sizeof mark, "process: pid %d ", pid);
    char *text = h_slurp(report, NULL);
    cr_assert_not_null(strstr(text, mark), "%s is not the report of pid %d:\n%s", report, pid,
                       text);
    free(text);
    cr_assert(!strncmp(kept, dir, strlen(dir)), "kept %s, not under %s", kept, dir);
    cr_assert_eq(count_entries(dir, "closewatch-run-"), 1);
    char rings[4][512];
    cr_assert_eq(h_rings(kept, 0, rings, 4), 1, "no ring in %s", kept);
    /* What was kept is what `report` needs. */
    c = CW(dir, "report", "--grace=0.2", rings[0]);
    cr_assert_eq(exit_code(&c), 1);
    cmd_free(&c);

    c = CW(dir, "run", dirarg, "--keep", "--grace=0.2", "--", fixture("e2e_server"), "clean", "0",
           "0");
    cr_assert_eq(exit_code(&c), 0, "%s", c.err);
    char kept2[1024];
    cr_assert(kept_dir(c.err, kept2, sizeof kept2), "%s", c.err);
    cmd_free(&c);
    cr_assert_str_neq(kept2, kept);
    cr_assert_eq(count_entries(dir, "closewatch-run-"), 2);
    cr_assert_eq(h_rings(kept2, 0, rings, 4), 1, "no ring in %s", kept2);
}

/* ================================================================================
 * suite edges: findings a user can trust at the boundaries (issue 9)
 * ================================================================================ */

TestSuite(edges, .fini = e2e_fini);

/* A client that connects, sends a byte and hangs up, again and again. */
struct churn {
    int port;
    _Atomic int stop;
    _Atomic long done;
};

static void *churn_client(void *arg)
{
    struct churn *c = arg;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)c->port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    while (!c->stop) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
            send(fd, "x", 1, MSG_NOSIGNAL) == 1)
            c->done++;
        if (fd >= 0)
            close(fd);
    }
    return NULL;
}

static int churned_enough(void *arg)
{
    return ((struct churn *)arg)->done >= 300;
}

/* A correct server under sustained churn: every live report is clean,
 * however many sockets open and close between its looks at the ring and
 * at the kernel. */
Test(edges, live_reports_of_a_correct_server_under_churn_flag_nothing, .timeout = 90)
{
    const char *dir = e2e_mkdtemp("churn");
    char *argv[] = {(char *)fixture("threaded_server"), "100000000", NULL};
    struct h_proc p = spawn_bg(argv, NULL, 1, dir);
    struct churn c = {.port = atoi(expect_line(&p, "port "))};
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, churn_client, &c), 0);
    cr_assert(h_wait_for(churned_enough, &c, COND_TIMEOUT_MS), "no churn: %ld", (long)c.done);

    char pidarg[16], dirarg[1024];
    snprintf(pidarg, sizeof pidarg, "%d", (int)p.pid);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    int flagged = 0;
    char first[4096] = "";
    for (int i = 0; i < 12; i++) {
        struct cmd r = CW(dir, "report", "--grace=1", dirarg, pidarg);
        if (exit_code(&r) != 0 && !flagged++)
            snprintf(first, sizeof first, "%s", r.out);
        cmd_free(&r);
    }
    long during = c.done;
    c.stop = 1;
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    stop(p.pid);
    e2e_untrack(p.pid);
    cr_assert_gt(during, 300);
    cr_assert_eq(flagged, 0,
                 "%d of 12 live reports flagged a correct server (%ld connections); "
                 "the first:\n%s",
                 flagged, during, first);
}

/* The kernel shows pid holding `want` sockets in CLOSE_WAIT. */
struct kwant {
    int pid, want;
};

static int kernel_shows_close_wait(void *arg)
{
    struct kwant *k = arg;
    return h_kernel_close_wait(k->pid) >= k->want;
}

/* --grace=0 means every socket in CLOSE_WAIT: asked the moment the kernel
 * shows them, and after a SIGKILL whose last record was the final EOF (no
 * sampler round after it: the sampler's period is longer than the test). */
Test(edges, grace_zero_flags_every_close_wait_socket_live_and_after_sigkill, .timeout = 60)
{
    const char *dir = e2e_mkdtemp("grace0");
    char *argv[] = {(char *)fixture("demo_server"), "5", "60", NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=600000", NULL};
    struct h_proc p = spawn_bg(argv, env, 1, dir);
    expect_line(&p, "demo server: served 5");
    struct kwant k = {p.pid, 5};
    cr_assert(h_wait_for(kernel_shows_close_wait, &k, COND_TIMEOUT_MS));

    char pidarg[16], dirarg[1024];
    snprintf(pidarg, sizeof pidarg, "%d", (int)p.pid);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    struct cmd live = CW(dir, "report", "--format=json", "--grace=0", dirarg, pidarg);
    cr_assert_eq(exit_code(&live), 1, "%s%s", live.out, live.err);
    struct jv *doc = parse_or_fail(live.out, "live report");
    cr_assert_eq(count_findings(doc, "close_wait", p.pid), 5, "%s", live.out);
    jq_free(doc);
    cmd_free(&live);
    /* Younger than the grace: not findings, but not "nothing" either. */
    struct cmd young = CW(dir, "report", "--grace=3600", dirarg, pidarg);
    cr_assert_eq(exit_code(&young), 0, "%s", young.out);
    cr_assert(strstr(young.out, "5 sockets in CLOSE_WAIT for less than the grace of 3600 s"), "%s",
              young.out);
    cmd_free(&young);

    kill(p.pid, SIGKILL);
    h_wait(&p, CMD_TIMEOUT_MS);
    e2e_untrack(p.pid);
    char rings[4][512];
    cr_assert_eq(h_rings(dir, p.pid, rings, 4), 1);
    struct cmd dead = CW(dir, "report", "--format=json", "--grace=0", rings[0]);
    cr_assert_eq(exit_code(&dead), 1, "%s%s", dead.out, dead.err);
    doc = parse_or_fail(dead.out, "post-mortem report");
    cr_assert_eq(count_findings(doc, "close_wait", p.pid), 5, "%s", dead.out);
    cr_assert_str_eq(jq_str(doc, "processes.0.state"), "died");
    jq_free(doc);
    cmd_free(&dead);
}

/* The sampler of pid: the process named "closewatch-sampler PID ...". */
static pid_t sampler_of(pid_t pid)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    pid_t found = 0;
    while (d && !found && (de = readdir(d))) {
        char path[300], want[32];
        snprintf(path, sizeof path, "/proc/%s/cmdline", de->d_name);
        size_t n = 0;
        char *cmd = h_slurp(path, &n);
        int wn = snprintf(want, sizeof want, "closewatch-sampler%c%d%c", 0, (int)pid, 0);
        if (cmd && n >= (size_t)wn && !memcmp(cmd, want, (size_t)wn))
            found = atoi(de->d_name);
        free(cmd);
    }
    if (d)
        closedir(d);
    return found;
}

/* Whether process *arg is blocked in poll() (its /proc/PID/syscall). */
static int waits_in_poll(void *arg)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/syscall", *(pid_t *)arg);
    char *t = h_slurp(path, NULL);
    int yes = t && atoi(t) == SYS_poll;
    free(t);
    return yes;
}

/* Killed past the grace, reported at once from the ring: judged up to the
 * death, which the sampler stamps when its pidfd wakes, not up to its last
 * round (with a period longer than the test, there was none after the EOFs,
 * so without that stamp the sockets' CLOSE_WAIT would have lasted 0 s). */
Test(edges, killed_past_the_grace_is_a_finding_post_mortem_at_once, .timeout = 60)
{
    const char *dir = e2e_mkdtemp("killstamp");
    char *argv[] = {(char *)fixture("demo_server"), "5", "60", NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=600000", NULL};
    struct h_proc p = spawn_bg(argv, env, 1, dir);
    expect_line(&p, "demo server: served 5");
    char pidarg[16], dirarg[1024];
    snprintf(pidarg, sizeof pidarg, "%d", (int)p.pid);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    uint64_t end = h_now_ms() + COND_TIMEOUT_MS;
    for (;;) { /* until the live report sees them past a 0.3 s grace */
        struct cmd live = CW(dir, "report", "--format=json", "--grace=0.3", dirarg, pidarg);
        struct jv *doc = parse_or_fail(live.out, "live report");
        int n = count_findings(doc, "close_wait", p.pid);
        jq_free(doc);
        cmd_free(&live);
        if (n == 5)
            break;
        cr_assert(h_now_ms() < end, "the live report never had the 5 findings");
        struct timespec ts = {0, 20 * 1000000}; /* between polls of a condition */
        nanosleep(&ts, NULL);
    }
    /* A starved sampler: stopped, it cannot stamp the death before the
     * report reads the ring, which must wait for it. */
    pid_t sampler = sampler_of(p.pid);
    cr_assert_gt(sampler, 0, "no sampler for pid %d", (int)p.pid);
    cr_assert_eq(kill(sampler, SIGSTOP), 0);
    kill(p.pid, SIGKILL);
    h_wait(&p, CMD_TIMEOUT_MS);
    e2e_untrack(p.pid);
    char rings[4][512];
    cr_assert_eq(h_rings(dir, p.pid, rings, 4), 1);
    char out[1100];
    snprintf(out, sizeof out, "%s/dead.json", dir);
    pid_t rep = fork();
    cr_assert_neq(rep, -1);
    if (rep == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        execl(h_path("closewatch"), "closewatch", "report", "--format=json", "--grace=0.3",
              rings[0], (char *)NULL);
        _exit(127);
    }
    cr_assert(h_wait_for(waits_in_poll, &rep, COND_TIMEOUT_MS),
              "the post-mortem report did not wait for the killed process's sampler");
    cr_assert_eq(kill(sampler, SIGCONT), 0);
    int st;
    cr_assert_eq(waitpid(rep, &st, 0), rep);
    char *text = h_slurp(out, NULL);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %#x: %s", st, text);
    struct jv *doc = parse_or_fail(text, "post-mortem report");
    cr_assert_eq(count_findings(doc, "close_wait", p.pid), 5, "%s", text);
    cr_assert_str_eq(jq_str(doc, "processes.0.state"), "died");
    jq_free(doc);
    free(text);
}

/* An unread CLOSE_WAIT is dated by the kernel (tcpi_last_ack_recv), not by
 * the sampler round that first saw it: flagged as soon as the grace is
 * over, with an age within 100 ms of the truth. Default sampling period. */
Test(edges, unread_close_wait_is_dated_by_the_kernel, .timeout = 60)
{
    const char *dir = e2e_mkdtemp("kdate");
    struct h_proc p;
    struct h_ctl ctl;
    uint64_t fin_ms;
    int port;
    idle_client_hung_up(&p, &ctl, NULL, 1, dir, &fin_ms, &port);

    char pidarg[16], dirarg[1024];
    snprintf(pidarg, sizeof pidarg, "%d", (int)p.pid);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    for (;;) {
        uint64_t before = h_now_ms();
        struct cmd r = CW(dir, "report", "--format=json", "--grace=1", dirarg, pidarg);
        uint64_t after = h_now_ms();
        int code = exit_code(&r);
        struct jv *doc = parse_or_fail(r.out, "live report");
        if (code == 1) {
            double age = jq_num(doc, "findings.0.seconds_in_close_wait");
            double lo = (double)(before - fin_ms) / 1e3 - 0.1,
                   hi = (double)(after - fin_ms) / 1e3 + 0.1;
            cr_assert(age >= lo && age <= hi, "age %.3f s, the truth was %.3f-%.3f s", age,
                      lo + 0.1, hi - 0.1);
            jq_free(doc);
            cmd_free(&r);
            break;
        }
        cr_assert_eq(code, 0, "%s", r.err);
        /* A report begun past the grace (and a jiffy) flags it: not one a
         * sampling period later. */
        cr_assert(before - fin_ms < 1000 + 100, "not flagged %llu ms after the FIN (grace 1 s)",
                  (unsigned long long)(before - fin_ms));
        jq_free(doc);
        cmd_free(&r);
        struct timespec ts = {0, 20 * 1000000}; /* between polls, not synchronisation */
        nanosleep(&ts, NULL);
    }
    h_ctl_release(&ctl);
    wait_exit(&p);
}

/* A ring left by a process killed while it started (empty, or all zeros)
 * is skipped with a warning; a leak next to it still exits 1, a garbage
 * file alone exits 2 naming it; a ring named through a symlink is read. */
Test(edges, uninitialised_rings_are_warnings_and_a_leak_still_exits_1, .timeout = 60)
{
    const char *dir = e2e_mkdtemp("uninit");
    char ring[1024], zero[1100], empty[1100], garbage[1100], link[1100];
    demo_ring(dir, "1.5", ring, sizeof ring);
    snprintf(zero, sizeof zero, "%s/closewatch.1.0.ring", dir);
    snprintf(empty, sizeof empty, "%s/closewatch.2.0.ring", dir);
    snprintf(garbage, sizeof garbage, "%s/garbage.ring", dir);
    snprintf(link, sizeof link, "%s/link.ring", dir);
    static uint8_t zeros[8192], junk[8192];
    memset(junk, 'x', sizeof junk);
    spit(zero, zeros, sizeof zeros);
    spit(empty, "", 0);
    spit(garbage, junk, sizeof junk);
    cr_assert_eq(symlink(ring, link), 0);

    struct cmd c = CW(dir, "report", "--grace=1", ring, zero, empty);
    cr_assert_eq(exit_code(&c), 1, "%s%s", c.out, c.err);
    cr_assert(strstr(c.out, "close_wait: 2"), "%s", c.out);
    cr_assert(strstr(c.err, "warning: skipping") && strstr(c.err, zero) && strstr(c.err, empty),
              "%s", c.err);
    cmd_free(&c);

    c = CW(dir, "report", "--grace=1", garbage);
    cr_assert_eq(exit_code(&c), 2, "%s%s", c.out, c.err);
    cr_assert(strstr(c.err, garbage) && strstr(c.err, "not a closewatch ring"), "%s", c.err);
    cmd_free(&c);

    /* A leak beside an unreadable input: the leak decides the status. */
    c = CW(dir, "report", "--grace=1", ring, garbage);
    cr_assert_eq(exit_code(&c), 1, "%s%s", c.out, c.err);
    cmd_free(&c);

    c = CW(dir, "report", "--grace=1", link);
    cr_assert_eq(exit_code(&c), 1, "%s%s", c.out, c.err);
    cr_assert(strstr(c.out, "close_wait: 2"), "%s", c.out);
    cmd_free(&c);

    /* Scanning the directory: the zero rings are warnings too. */
    char dirarg[1100];
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    c = CW(dir, "report", "--grace=1", dirarg);
    cr_assert_eq(exit_code(&c), 1, "%s%s", c.out, c.err);
    cmd_free(&c);
}

/* `report PID` finds the ring the process mapped, whatever --dir says. */
Test(edges, live_report_finds_the_ring_from_proc_maps, .timeout = 60)
{
    const char *dir = e2e_mkdtemp("maps");
    char *argv[] = {(char *)fixture("demo_server"), "2", "60", NULL};
    struct h_proc p = spawn_bg(argv, NULL, 1, dir);
    expect_line(&p, "demo server: served 2");
    char pidarg[16];
    snprintf(pidarg, sizeof pidarg, "%d", (int)p.pid);
    /* The default directory, not the one the program writes to. */
    struct cmd c = CW(dir, "report", "--format=json", "--grace=0", "--dir=/dev/shm", pidarg);
    cr_assert_eq(exit_code(&c), 1, "%s%s", c.out, c.err);
    struct jv *doc = parse_or_fail(c.out, "live report");
    cr_assert_eq(count_findings(doc, "close_wait", p.pid), 2, "%s", c.out);
    cr_assert_eq(jq_bool(doc, "processes.0.backtraces"), 1, "%s", c.out);
    cr_assert(stack_has(jq_get(doc, "findings.0.stacks.open"), "main", "/demo_server.c"), "%s",
              c.out);
    jq_free(doc);
    cmd_free(&c);
}

/* A real Perl fork-per-connection server (the parent accepts every
 * connection on the same fd number): each child's finding names the
 * parent's accept, read from the child's own ring (the parent's ring file
 * is removed before the report). */
Test(edges, perl_forking_server_children_keep_the_accept_stack, .timeout = 60)
{
    if (access("/usr/bin/perl", X_OK) != 0)
        cr_skip_test("/usr/bin/perl is not installed");
    const char *dir = e2e_mkdtemp("perlfork");
    struct h_ctl ctl;
    h_ctl_open(&ctl);
    char script[1024];
    snprintf(script, sizeof script, "%s/../tests/real/perl_fork_server.pl", h_build());
    char *argv[] = {"/usr/bin/perl", script, "3", ctl.arg, NULL};
    struct h_proc p = spawn_bg(argv, NULL, 1, dir);
    h_ctl_spawned(&ctl);
    int port = atoi(expect_line(&p, "port "));
    for (int i = 0; i < 3; i++) {
        int c = h_connect(port);
        cr_assert_eq(write(c, "hello", 5), 5);
        close(c);
        expect_line(&p, "child ");
    }
    /* Live, while the children hold their sockets (at exit perl's global
     * destruction closes them: issue 9's teardown case, not this one). */
    char rings[8][512], parent_ring[600];
    cr_assert_eq(h_rings(dir, 0, rings, 8), 4, "the parent and three children");
    snprintf(parent_ring, sizeof parent_ring, "%s/closewatch.%d.0.ring", dir, (int)p.pid);
    cr_assert_eq(unlink(parent_ring), 0, "%s: %s", parent_ring, strerror(errno));
    char dirarg[1100];
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    struct cmd c = CW(dir, "report", "--format=json", "--grace=0", dirarg);
    cr_assert_eq(exit_code(&c), 1, "%s%s", c.out, c.err);
    struct jv *doc = parse_or_fail(c.out, "report");
    cr_assert_eq(count_findings(doc, "close_wait", 0), 3, "%s", c.out);
    for (int i = 0; i < 3; i++) {
        char path[64];
        snprintf(path, sizeof path, "findings.%d.stacks.open", i);
        /* Debian's perl has no line tables: the function name is enough. */
        const struct jv *stack = jq_get(doc, path);
        int named = 0;
        for (int k = 0; k < jq_len(stack, NULL) && !named; k++) {
            const char *fn = jq_str(jq_get(stack, NULL)->item[k], "function");
            named = fn && !strcmp(fn, "Perl_pp_accept");
        }
        cr_assert(named, "finding %d has no accept stack:\n%s", i, c.out);
    }
    jq_free(doc);
    cmd_free(&c);
    h_ctl_release(&ctl);
    cr_assert_eq(wait_exit(&p), 0);
}

/*
 * test_lang_report.c - the reports of a real leaking Python service
 * (tests/real/py_kept_leak.py) name the script's own lines: the finding's
 * place (text "where:", JSON frames with language "python", SARIF's
 * physicalLocation) is the accept() line, the EOF stack's the recv() line,
 * the runtime's internals are folded unless --frames=all, live and after
 * SIGKILL, on Debian's python3 and the pyenv interpreters at hand; an
 * asyncio server's findings name the listener's start_server line. The
 * lines are found by their markers in the script, not copied from output.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "jsonq.h"

#define COND_MS 20000

static const char *script(void)
{
    static char p[1024];
    char rel[1100];
    snprintf(rel, sizeof rel, "%s/../tests/real/py_kept_leak.py", h_build());
    cr_assert(realpath(rel, p), "cannot find %s", rel);
    return p;
}

static int marker_line(const char *marker)
{
    return h_marker_line(script(), marker);
}

/* The first frame of stack (a JSON array) in language lang, its index in *at. */
static const struct jv *first_frame_in(const struct jv *stack, const char *lang, int *at)
{
    for (int i = 0; i < jq_len(stack, NULL); i++) {
        char p[32];
        snprintf(p, sizeof p, "%d", i);
        const struct jv *f = jq_get(stack, p);
        const char *l = jq_str(f, "language");
        if (l && !strcmp(l, lang)) {
            *at = i;
            return f;
        }
    }
    return NULL;
}

/* A frame of stack naming the script at line. */
static int has_script_line(const struct jv *stack, const char *function, int line)
{
    for (int i = 0; i < jq_len(stack, NULL); i++) {
        char p[32];
        snprintf(p, sizeof p, "%d", i);
        const struct jv *f = jq_get(stack, p);
        const char *file = jq_str(f, "file"), *fn = jq_str(f, "function"),
                   *lang = jq_str(f, "language");
        if (file && fn && lang && !strcmp(file, script()) && !strcmp(fn, function) &&
            !strcmp(lang, "python") && jq_num(f, "line") == line)
            return 1;
    }
    return 0;
}

static void check_python(const char *python)
{
    char *dir = h_mkdtemp("langrep");
    char *argv[] = {(char *)python, (char *)script(), NULL};
    struct h_proc p = h_spawn(argv, NULL, 1, dir, 1);
    char line[256];
    cr_assert(h_read_line(&p, line, sizeof line, COND_MS), "%s did not start", python);
    int port = atoi(line);
    for (int i = 0; i < 2; i++) {
        int fd = h_connect(port);
        cr_assert_eq(write(fd, "x", 1), 1);
        close(fd);
        cr_assert(h_read_line(&p, line, sizeof line, COND_MS) && !strcmp(line, "eof"));
    }
    int accept_line = marker_line("MARK-ACCEPT"), eof_line = marker_line("MARK-EOF");
    char pid[16], dirarg[700];
    snprintf(pid, sizeof pid, "%d", (int)p.pid);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);

    /* Live, JSON: the open stack names <module> at the accept line, the EOF
     * stack handle() at the recv line, frames marked python. */
    char *out = NULL;
    uint64_t end = h_now_ms() + COND_MS;
    struct jv *doc = NULL;
    for (;;) {
        char *args[] = {"report", "--format=json", "--grace=0.3", dirarg, pid, NULL};
        free(out);
        int rc = h_closewatch(dir, args, &out);
        char err[256];
        jq_free(doc);
        doc = jq_parse(out, err, sizeof err);
        cr_assert_not_null(doc, "%s: %s", err, out);
        if (rc == 1 && jq_len(doc, "findings") == 2)
            break;
        cr_assert_lt(h_now_ms(), end, "%s: no 2 findings: %s", python, out);
        usleep(100 * 1000); /* polling a condition: the grace must pass */
    }
    for (int i = 0; i < 2; i++) {
        char path[64];
        snprintf(path, sizeof path, "findings.%d.stacks.open", i);
        cr_assert(has_script_line(jq_get(doc, path), "<module>", accept_line),
                  "%s: no <module> at line %d in %s:\n%s", python, accept_line, path, out);
        snprintf(path, sizeof path, "findings.%d.stacks.eof", i);
        cr_assert(has_script_line(jq_get(doc, path), "handle", eof_line),
                  "%s: no handle at line %d in %s:\n%s", python, eof_line, path, out);
        int at;
        cr_assert_not_null(first_frame_in(jq_get(doc, path), "c", &at),
                           "the native leaf (the recv call) must stay");
    }
    jq_free(doc);
    free(out);

    /* Text: the script's line before any stack, internals folded. */
    char *targs[] = {"report", "--grace=0.3", dirarg, pid, NULL};
    cr_assert_eq(h_closewatch(dir, targs, &out), 1);
    char where[1200];
    snprintf(where, sizeof where,
             "  where: opened at %s:%d (<module>), EOF seen at %s:%d (handle)\n", script(),
             accept_line, script(), eof_line);
    cr_assert(strstr(out, where), "%s: no '%s' in:\n%s", python, where, out);
    cr_assert(strstr(out, "frames of the runtime's internals folded"), "%s", out);
    cr_assert_null(strstr(out, "_PyEval_EvalFrameDefault"), "the eval loop is shown:\n%s", out);
    free(out);
    char *aargs[] = {"report", "--grace=0.3", "--frames=all", dirarg, pid, NULL};
    cr_assert_eq(h_closewatch(dir, aargs, &out), 1);
    cr_assert_null(strstr(out, "internals folded"), "--frames=all folded:\n%s", out);
    cr_assert(strstr(out, where), "%s", out);
    free(out);

    /* SARIF places it at the accept line. */
    char *sargs[] = {"report", "--format=sarif", "--grace=0.3", dirarg, pid, NULL};
    cr_assert_eq(h_closewatch(dir, sargs, &out), 1);
    char err[256];
    doc = jq_parse(out, err, sizeof err);
    cr_assert_not_null(doc, "%s", err);
    const char *uri =
        jq_str(doc, "runs.0.results.0.locations.0.physicalLocation.artifactLocation.uri");
    cr_assert(uri && strstr(uri, "/tests/real/py_kept_leak.py"), "uri %s", uri ? uri : "null");
    cr_assert_eq(jq_num(doc, "runs.0.results.0.locations.0.physicalLocation.region.startLine"),
                 accept_line);
    jq_free(doc);
    free(out);

    /* After SIGKILL, from the ring file alone: the same place. */
    kill(p.pid, SIGKILL);
    h_wait(&p, COND_MS);
    char rings[2][512];
    cr_assert_eq(h_rings(dir, 0, rings, 2), 1);
    char *pargs[] = {"report", "--grace=0.3", rings[0], NULL};
    cr_assert_eq(h_closewatch(dir, pargs, &out), 1, "%s", out);
    cr_assert(strstr(out, where), "post-mortem lost the script's lines:\n%s", out);
    free(out);
    h_rmdir(dir);
    free(dir);
}

Test(lang_report, debian_python3_names_the_script_lines, .timeout = 90)
{
    if (access("/usr/bin/python3", X_OK))
        cr_skip_test("/usr/bin/python3 is not installed");
    check_python("/usr/bin/python3");
}

Test(lang_report, pyenv_pythons_name_the_script_lines, .timeout = 180)
{
    static const char *const minors[] = {"3.10", "3.12", "3.13"};
    int ran = 0;
    for (size_t i = 0; i < sizeof minors / sizeof *minors; i++) {
        const char *py = h_pyenv_python(minors[i]);
        if (py) {
            check_python(py);
            ran++;
        }
    }
    if (!ran)
        cr_skip_test("no pyenv CPython 3.10, 3.12 or 3.13 under ~/.pyenv/versions");
}

/* An interpreter without a frame walker: the report says so in one line,
 * the stacks are native, nothing breaks. */
Test(lang_report, unknown_python_says_why, .timeout = 60)
{
    const char *python = h_pyenv_python("3.9");
    if (!python)
        cr_skip_test("no pyenv CPython 3.9 (the version without a walker) under ~/.pyenv/versions");
    char *dir = h_mkdtemp("langrep39");
    char *argv[] = {(char *)python, (char *)script(), NULL};
    struct h_proc p = h_spawn(argv, NULL, 1, dir, 1);
    char line[256];
    cr_assert(h_read_line(&p, line, sizeof line, COND_MS), "%s did not start", python);
    int fd = h_connect(atoi(line));
    cr_assert_eq(write(fd, "x", 1), 1);
    close(fd);
    cr_assert(h_read_line(&p, line, sizeof line, COND_MS) && !strcmp(line, "eof"));
    char pid[16], dirarg[700], *out;
    snprintf(pid, sizeof pid, "%d", (int)p.pid);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    char *args[] = {"report", "--grace=0", dirarg, pid, NULL};
    cr_assert_eq(h_closewatch(dir, args, &out), 1, "%s", out);
    cr_assert(strstr(out, "runtime frames not recorded: CPython 3.9"), "%s", out);
    cr_assert_null(strstr(out, "[python]"), "%s", out);
    cr_assert(strstr(out, "sock_accept"), "native frames expected:\n%s", out);
    free(out);
    kill(p.pid, SIGKILL);
    h_wait(&p, COND_MS);
    h_rmdir(dir);
    free(dir);
}

/* A real client library's pool: requests (urllib3) keeps the connection its
 * server closed; the finding names the line that made the request, below
 * twenty frames of requests, urllib3 and http.client. */
Test(lang_report, requests_pool_names_the_request_line, .timeout = 60)
{
    if (system("/usr/bin/python3 -c 'import requests' >/dev/null 2>&1") != 0)
        cr_skip_test("Debian's python3-requests is not installed "
                     "(scripts/install-test-deps.sh installs it)");
    char *dir = h_mkdtemp("langreq");
    char path[1100], rel[1100];
    snprintf(rel, sizeof rel, "%s/../tests/real/py_requests_pool.py", h_build());
    cr_assert(realpath(rel, path), "cannot find %s", rel);
    struct h_ctl ctl;
    h_ctl_open(&ctl);
    char *argv[] = {"/bin/sh", "-c", "exec /usr/bin/python3 \"$0\" <&\"$1\"", path, ctl.arg, NULL};
    struct h_proc p = h_spawn(argv, NULL, 1, dir, 1);
    h_ctl_spawned(&ctl);
    char line[256];
    cr_assert(h_read_line(&p, line, sizeof line, COND_MS) && !strcmp(line, "got 200"), "%s", line);

    char pid[16], dirarg[1200], where[1300], *out = NULL;
    snprintf(pid, sizeof pid, "%d", (int)p.pid);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(where, sizeof where, "  where: opened at %s:%d (<module>)\n", path,
             h_marker_line(path, "MARK-REQUEST"));
    uint64_t end = h_now_ms() + COND_MS;
    for (;;) { /* the server's FIN, then the grace */
        char *args[] = {"report", "--grace=0.3", dirarg, pid, NULL};
        free(out);
        if (h_closewatch(dir, args, &out) == 1)
            break;
        cr_assert_lt(h_now_ms(), end, "no finding:\n%s", out);
        usleep(100 * 1000);
    }
    cr_assert(strstr(out, where), "no '%s' in:\n%s", where, out);
    cr_assert(strstr(out, "urllib3/connection.py"), "the pool's frames are listed:\n%s", out);
    cr_assert(strstr(out, "eof: unread"), "%s", out);
    free(out);
    h_ctl_release(&ctl);
    cr_assert_neq(h_wait(&p, COND_MS), -1);
    h_rmdir(dir);
    free(dir);
}

/* asyncio accepts in its event loop: the finding's own stacks end in
 * asyncio.run(), its listener's names the start_server line (text and
 * JSON), and the two leaks of that server make one group. */
Test(lang_report, asyncio_server_names_its_listener, .timeout = 60)
{
    char *dir = h_mkdtemp("langasyncio");
    char path[1100], rel[1100];
    snprintf(rel, sizeof rel, "%s/../tests/real/py_asyncio_leak.py", h_build());
    cr_assert(realpath(rel, path), "cannot find %s", rel);
    struct h_ctl ctl;
    h_ctl_open(&ctl);
    char *argv[] = {"/bin/sh", "-c",    "exec /usr/bin/python3 \"$0\" 2 <&\"$1\"",
                    path,      ctl.arg, NULL};
    struct h_proc p = h_spawn(argv, NULL, 1, dir, 1);
    h_ctl_spawned(&ctl);
    char line[256];
    cr_assert(h_read_line(&p, line, sizeof line, COND_MS) && !strcmp(line, "leaked 2"), "%s", line);
    int start_line = h_marker_line(path, "MARK-START-SERVER");
    char pid[16], dirarg[1200], listener[1300], *out = NULL;
    snprintf(pid, sizeof pid, "%d", (int)p.pid);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(listener, sizeof listener, ", opened at %s:%d (main)\n", path, start_line);
    uint64_t end = h_now_ms() + COND_MS;
    for (;;) { /* the grace, for both sockets (their FINs need not come together) */
        char *args[] = {"report", "--grace=0.3", dirarg, pid, NULL};
        free(out);
        if (h_closewatch(dir, args, &out) == 1 && strstr(out, "SUMMARY: closewatch: 2 findings"))
            break;
        cr_assert_lt(h_now_ms(), end, "no finding:\n%s", out);
        usleep(100 * 1000);
    }
    const char *l = strstr(out, "\n  listener: fd ");
    const char *eol = l ? strchr(l + 1, '\n') : NULL;
    size_t ln = strlen(listener);
    cr_assert(eol && (size_t)(eol + 1 - l) > ln && !strncmp(eol + 1 - ln, listener, ln),
              "no listener line ending '%s' in:\n%s", listener, out);
    cr_assert(strstr(out, "2 sockets in CLOSE_WAIT without close()"), "one group:\n%s", out);
    free(out);

    char *jargs[] = {"report", "--format=json", "--grace=0.3", dirarg, pid, NULL};
    h_closewatch(dir, jargs, &out);
    char err[256];
    struct jv *doc = jq_parse(out, err, sizeof err);
    cr_assert_not_null(doc, "%s: %s", err, out);
    cr_assert_eq(jq_len(doc, "findings"), 2, "%s", out);
    for (int i = 0; i < 2; i++) {
        char fpath[64];
        snprintf(fpath, sizeof fpath, "findings.%d.stacks.listener", i);
        /* the innermost Python frames are asyncio's; the script's is below */
        int found = 0;
        const struct jv *st = jq_get(doc, fpath);
        for (int k = 0; k < jq_len(st, NULL) && !found; k++) {
            char kp[16];
            snprintf(kp, sizeof kp, "%d", k);
            const struct jv *f = jq_get(st, kp);
            found = jq_str(f, "file") && !strcmp(jq_str(f, "file"), path) &&
                    jq_num(f, "line") == start_line;
        }
        cr_assert(found, "no %s:%d in %s:\n%s", path, start_line, fpath, out);
        snprintf(fpath, sizeof fpath, "findings.%d.listener_fd", i);
        cr_assert_geq(jq_num(doc, fpath), 0, "%s", out);
    }
    jq_free(doc);
    free(out);
    h_ctl_release(&ctl);
    cr_assert_neq(h_wait(&p, COND_MS), -1);
    h_rmdir(dir);
    free(dir);
}

/*
 * test_lang.c - language frames in recorded stacks: a real CPython
 * socketserver server whose handler returns on recv() == b"" without
 * closing, run under the preload on every CPython at hand. The accept and
 * EOF stacks name the script's own lines (found by their markers in the
 * script, not copied from tool output), live and after SIGKILL; an
 * interpreter without a walker (3.9) gives native frames and says why.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../analyzer/lang_frames.h"
#include "fuzz/ring_build.h"
#include "harness.h"

#define SCRIPT "tests/real/py_handler_leak.py"

/* A file of the source tree: under $CW_SRC, beside the build directory
 * (make test), or under the current directory (a build dir elsewhere). */
static const char *repo_file(const char *rel, char *out, size_t len)
{
    const char *src = getenv("CW_SRC");
    char c[3][1200], full[PATH_MAX];
    snprintf(c[0], sizeof c[0], "%s/%s", src && *src ? src : "/nonexistent", rel);
    snprintf(c[1], sizeof c[1], "%s/../%s", h_build(), rel);
    snprintf(c[2], sizeof c[2], "./%s", rel);
    for (int i = 0; i < 3; i++)
        if (realpath(c[i], full)) {
            snprintf(out, len, "%s", full);
            return out;
        }
    cr_assert_fail("cannot find %s (set CW_SRC to the source tree)", rel);
    return NULL;
}

static const char *script_path(void)
{
    static char p[PATH_MAX];
    return repo_file(SCRIPT, p, sizeof p);
}

/* The accepted socket's fd entry (the only one the server accepted; in a
 * forked handler, the one it inherited with its EOF). */
static int accepted_entry(const struct cw_ring *r, struct cw_fd_entry *out)
{
    for (uint32_t fd = 0; fd < r->hdr.fd_cap && fd < 4096; fd++)
        if (cw_ring_fd(r, fd, out) && out->sid &&
            (out->origin == CW_ORIGIN_ACCEPT ||
             (out->origin == CW_ORIGIN_INHERITED && out->eof_stack)))
            return 1;
    return 0;
}

static struct cw_hframe frames[CW_MAX_DEPTH + CW_LANG_DEPTH];

/* The index of a Python frame in stack id at file:line whose function ends
 * with func, -1 if none; *py counts the stack's Python frames. */
static int find_frame(const struct cw_ring *r, uint32_t id, const char *file, int line,
                      const char *func, int *py)
{
    int n = cw_lang_hybrid(r, id, frames, (int)(sizeof frames / sizeof *frames), NULL);
    int at = -1;
    *py = 0;
    for (int i = 0; i < n; i++) {
        if (frames[i].lang != CW_LANG_PYTHON)
            continue;
        ++*py;
        size_t fl = strlen(frames[i].function), l = strlen(func);
        if (at < 0 && !strcmp(frames[i].file, file) && frames[i].line == line && fl >= l &&
            !strcmp(frames[i].function + fl - l, func))
            at = i;
    }
    return at;
}

/* A stack as text, for failure messages. */
static const char *stack_text(const struct cw_ring *r, uint32_t id)
{
    static char buf[8192];
    size_t len = 0;
    int n = cw_lang_hybrid(r, id, frames, (int)(sizeof frames / sizeof *frames), NULL);
    buf[0] = 0;
    for (int i = 0; i < n && len < sizeof buf - 400; i++)
        len += frames[i].lang == CW_LANG_PYTHON
                   ? (size_t)snprintf(buf + len, sizeof buf - len, "\n  %s (%s:%d)",
                                      frames[i].function, frames[i].file, frames[i].line)
                   : (size_t)snprintf(buf + len, sizeof buf - len, "\n  0x%lx%s",
                                      (unsigned long)frames[i].pc, frames[i].eval ? " [eval]" : "");
    return buf;
}

/* `closewatch dump RING` output, NUL-terminated, malloc'd. */
static char *dump_of(const char *ring)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' dump '%s'", h_path("closewatch"), ring);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "cannot run %s", cmd);
    size_t cap = 1 << 20, len = 0;
    char *out = malloc(cap);
    size_t k;
    while ((k = fread(out + len, 1, cap - 1 - len, p)) > 0)
        len += k;
    out[len] = 0;
    cr_assert_eq(pclose(p), 0, "closewatch dump failed: %s", out);
    return out;
}

struct server {
    struct h_proc p;
    char *dir;
    char ring[512];
};

/* Starts the script under python (mode: NULL, or "fork" for a forking
 * server), makes one connection and hangs up on it; returns once the
 * handler saw the EOF, with s->ring the ring of the process that saw it. */
static void serve_mode(struct server *s, const char *python, const char *mode)
{
    s->dir = h_mkdtemp("lang");
    char *argv[] = {(char *)python, (char *)script_path(), (char *)mode, NULL};
    s->p = h_spawn(argv, NULL, 1, s->dir, 1);
    char line[64];
    cr_assert(h_read_line(&s->p, line, sizeof line, 20000), "%s printed no port", python);
    int fd = h_connect(atoi(line));
    cr_assert(fd >= 0, "cannot connect to %s's server on port %s", python, line);
    close(fd);
    cr_assert(h_read_line(&s->p, line, sizeof line, 20000) && !strcmp(line, "eof"),
              "%s's handler did not see the EOF (got '%s')", python, line);
    char paths[4][512];
    if (!mode) {
        cr_assert_eq(h_rings(s->dir, s->p.pid, paths, 4), 1, "expected one ring of %d", s->p.pid);
        snprintf(s->ring, sizeof s->ring, "%s", paths[0]);
        return;
    }
    int n = h_rings(s->dir, 0, paths, 4);
    s->ring[0] = 0;
    for (int i = 0; i < n; i++) {
        struct cw_ring r;
        char err[256];
        if (cw_ring_open(&r, paths[i], err, sizeof err) == CW_RING_OK) {
            if (r.hdr.pid != s->p.pid)
                snprintf(s->ring, sizeof s->ring, "%.500s", paths[i]);
            cw_ring_close(&r);
        }
    }
    cr_assert(s->ring[0], "no ring of the forked handler among %d rings", n);
}

static void serve_one(struct server *s, const char *python)
{
    serve_mode(s, python, NULL);
}

static void kill_server(struct server *s)
{
    kill(s->p.pid, SIGKILL);
    int st = h_wait(&s->p, 10000);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "server did not die of SIGKILL");
}

/* The accept stack names the script's handle_request() line, the EOF stack
 * the handler's recv() line; both live and after SIGKILL (post-mortem). */
static void expect_script_frames_mode(const char *python, const char *mode)
{
    const char *script = script_path();
    int accept_line = h_marker_line(script, "MARK-ACCEPT"),
        eof_line = h_marker_line(script, "MARK-EOF");
    struct server s;
    serve_mode(&s, python, mode);

    for (int pass = 0; pass < 2; pass++) {
        struct cw_ring r;
        char err[256];
        cr_assert_eq(cw_ring_open(&r, s.ring, err, sizeof err), CW_RING_OK, "%s", err);
        char why[200];
        cr_assert_null(cw_lang_unsupported(&r, CW_LANG_PYTHON, why, sizeof why), "%s: %s", python,
                       why);
        cr_assert(cw_lang_runtime_name(&r, CW_LANG_PYTHON, why, sizeof why),
                  "%s: no CPython runtime record in the ring", python);
        struct cw_fd_entry e;
        cr_assert(accepted_entry(&r, &e), "%s: no accepted socket in the ring", python);
        cr_assert(e.open_stack && e.eof_stack, "%s: accepted socket without open/EOF stacks",
                  python);
        int py;
        cr_expect_geq(find_frame(&r, e.open_stack, script, accept_line, "<module>", &py), 0,
                      "%s (%s): open stack lacks <module> (%s:%d):%s", python, why, script,
                      accept_line, stack_text(&r, e.open_stack));
        cr_expect_geq(py, 4,
                      "%s: open stack has %d Python frames (socket.accept, get_request, "
                      "_handle_request_noblock, handle_request, <module>)",
                      python, py);
        cr_expect_geq(find_frame(&r, e.eof_stack, script, eof_line, "handle", &py), 0,
                      "%s (%s): EOF stack lacks handle (%s:%d):%s", python, why, script, eof_line,
                      stack_text(&r, e.eof_stack));
        cw_ring_close(&r);
        if (pass == 0)
            kill_server(&s); /* the forked handler has exited by itself */
    }
    /* The command-line view of the dead process's ring. */
    char *out = dump_of(s.ring), want[1200];
    snprintf(want, sizeof want, "(%s:%d)", script, eof_line);
    cr_expect(strstr(out, want), "closewatch dump after SIGKILL lacks %s:\n%.3000s", want, out);
    cr_expect(strstr(out, "python frames: recorded (CPython "), "dump names no runtime:\n%.2000s",
              out);
    free(out);
    h_rmdir(s.dir);
}

static void expect_script_frames(const char *python)
{
    expect_script_frames_mode(python, NULL);
}

static void pyenv_case(const char *minor)
{
    const char *py = h_pyenv_python(minor);
    if (!py)
        cr_skip_test("no pyenv CPython %s (~/.pyenv/versions/%s.*/bin/python%s)", minor, minor,
                     minor);
    expect_script_frames(py);
}

Test(lang, python_frames_debian_python3, .timeout = 60)
{
    if (access("/usr/bin/python3", X_OK) != 0)
        cr_skip_test("no /usr/bin/python3 (Debian's python3 package)");
    expect_script_frames("/usr/bin/python3");
}

Test(lang, python_frames_pyenv_3_10, .timeout = 60)
{
    pyenv_case("3.10");
}

Test(lang, python_frames_pyenv_3_11, .timeout = 60)
{
    pyenv_case("3.11");
}

Test(lang, python_frames_pyenv_3_12, .timeout = 60)
{
    pyenv_case("3.12");
}

Test(lang, python_frames_pyenv_3_13, .timeout = 60)
{
    pyenv_case("3.13");
}

/* A forking server: the handler's process copies the accept stack of the
 * socket it inherits, Python frames and their names included, into its own
 * ring, and records its own EOF stack there. */
Test(lang, python_fork_child_keeps_the_python_accept_stack, .timeout = 60)
{
    const char *py =
        access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : h_pyenv_python("3.12");
    if (!py)
        cr_skip_test("neither /usr/bin/python3 nor pyenv CPython 3.12 is installed");
    expect_script_frames_mode(py, "fork");
}

/* CPython 3.9 has no walker: the server runs as without the preload,
 * stacks are native only, and the ring says why in one line. */
Test(lang, python_unknown_version_native_frames_and_reason, .timeout = 60)
{
    const char *py = h_pyenv_python("3.9");
    if (!py)
        cr_skip_test("no pyenv CPython 3.9 (~/.pyenv/versions/3.9.*/bin/python3.9), the "
                     "interpreter without a walker");
    struct server s;
    serve_one(&s, py);
    struct cw_ring r;
    char err[256], why[200];
    cr_assert_eq(cw_ring_open(&r, s.ring, err, sizeof err), CW_RING_OK, "%s", err);
    cr_assert(cw_lang_unsupported(&r, CW_LANG_PYTHON, why, sizeof why),
              "3.9: the ring does not say its frames were not recorded");
    cr_expect(strstr(why, "CPython 3.9") && strstr(why, "native frames only"), "reason: %s", why);
    struct cw_fd_entry e;
    cr_assert(accepted_entry(&r, &e) && e.open_stack && e.eof_stack,
              "3.9: accepted socket without open/EOF stacks");
    int py_frames;
    find_frame(&r, e.open_stack, "", 0, "", &py_frames);
    cr_expect_eq(py_frames, 0, "3.9: %d Python frames recorded", py_frames);
    cr_expect_gt(cw_lang_hybrid(&r, e.open_stack, frames, CW_MAX_DEPTH, NULL), 3,
                 "3.9: native frames missing");
    cw_ring_close(&r);
    char *out = dump_of(s.ring);
    cr_expect(strstr(out, "python frames: not recorded: CPython 3.9"), "dump:\n%.2000s", out);
    free(out);
    kill_server(&s);
    h_rmdir(s.dir);
}

/* Line tables, by their documented formats: CPython 3.10's (byte
 * advance, signed line delta; -128: no line) and 3.11+'s location table
 * (tests/fuzz/ring_build.h has another). */
Test(lang, python_line_tables_decode_by_version)
{
    struct cw_code c = {.lang = CW_LANG_PYTHON, .version = 0x030a0df0, .first_line = 5};
    static const uint8_t t310[] = {6, 1, 4, 0x80, 2, 3};
    cr_expect_eq(cw_lang_line(&c, t310, sizeof t310, 0), 6);
    cr_expect_eq(cw_lang_line(&c, t310, sizeof t310, 5), 6);
    cr_expect_eq(cw_lang_line(&c, t310, sizeof t310, 6), 0, "no line");
    cr_expect_eq(cw_lang_line(&c, t310, sizeof t310, 10), 9, "-128 leaves the line as it was");
    cr_expect_eq(cw_lang_line(&c, t310, sizeof t310, 12), 0, "past the end");

    c.version = 0x030c01f0;
    c.first_line = 30;
    /* long form (14), one unit, line -1, then "no location" (15), one unit */
    static const uint8_t t312[] = {0xf0, 0x03, 0x00, 0x01, 0x02, 0xf8};
    cr_expect_eq(cw_lang_line(&c, t312, sizeof t312, 0), 29);
    cr_expect_eq(cw_lang_line(&c, t312, sizeof t312, 1), 29);
    cr_expect_eq(cw_lang_line(&c, t312, sizeof t312, 2), 0);
    c.version = 0x03090000;
    cr_expect_eq(cw_lang_line(&c, t312, sizeof t312, 0), 0, "no line for a version we do not know");
}

/* The merge, on a ring built by hand: the language frames up to an entry
 * frame stand before the evaluation-loop frame that ran them, the rest
 * (beneath a native stack cut short) last; a code record not published is
 * "?", never another function's name. */
Test(lang, hybrid_merge_at_eval_frames)
{
    struct rb_spec spec = rb_default();
    size_t size = rb_size(&spec);
    uint8_t *b = aligned_alloc(16, (size + 15) & ~(size_t)15);
    cr_assert_eq(rb_build(b, size, &spec), size);
    struct cw_ring r;
    char err[256];
    cr_assert_eq(cw_ring_from_memory(&r, b, size, "built", err, sizeof err), CW_RING_OK, "%s", err);
    struct cw_hframe f[16];
    int truncated = 0;
    int n = cw_lang_hybrid(&r, 2, f, 16, &truncated); /* slot 1: 2 pcs, language stack 1 */
    cr_assert_eq(n, 5);
    cr_expect(truncated);
    cr_expect(f[0].lang == CW_LANG_PYTHON && !strcmp(f[0].function, "Handler.handle") &&
                  !strcmp(f[0].file, "/srv/app.py") && f[0].line == 12,
              "#0 %s (%s:%d)", f[0].function, f[0].file, f[0].line);
    cr_expect(f[1].lang == CW_LANG_PYTHON && !strcmp(f[1].function, "<module>") && f[1].line == 22,
              "#1 %s (%s:%d)", f[1].function, f[1].file, f[1].line);
    cr_expect(f[2].lang == CW_LANG_NATIVE && f[2].eval, "#2 is the eval frame");
    cr_expect(f[3].lang == CW_LANG_NATIVE && !f[3].eval);
    cr_expect(f[4].lang == CW_LANG_PYTHON && !strcmp(f[4].function, "?") && !f[4].file[0]);
    cr_expect_eq(cw_lang_hybrid(&r, 1, f, 16, NULL), 1, "slot 0: no language stack");
    cr_expect_eq(cw_lang_hybrid(&r, 3, f, 16, NULL), 4, "code id out of range: '?'");
    cr_expect_str_eq(f[0].function, "?");
    char why[200];
    cr_expect_null(cw_lang_unsupported(&r, CW_LANG_PYTHON, why, sizeof why));
    cr_expect_str_eq(cw_lang_runtime_name(&r, CW_LANG_PYTHON, why, sizeof why), "CPython 3.11.2");
    cr_expect(cw_lang_unsupported(&r, CW_LANG_JAVA, why, sizeof why) &&
                  !strncmp(why, "HotSpot 17: rrr", 15),
              "an unterminated reason is cut, not overrun: %s", why);
    cw_ring_close(&r);
    free(b);
}

/* Daemon threads churning sockets while the interpreter exits under them:
 * every run ends with status 0, as without the preload. */
Test(lang, python_daemon_threads_churning_through_finalization, .timeout = 120)
{
    const char *pys[] = {"/usr/bin/python3", h_pyenv_python("3.12"), h_pyenv_python("3.13")};
    char script[PATH_MAX];
    repo_file("tests/real/py_daemon_churn.py", script, sizeof script);
    int ran = 0;
    for (size_t k = 0; k < sizeof pys / sizeof *pys; k++) {
        if (!pys[k] || access(pys[k], X_OK) != 0)
            continue;
        char py[1024];
        snprintf(py, sizeof py, "%s", pys[k]); /* pyenv_python's buffer is reused */
        for (int run = 0; run < 15; run++) {
            char *dir = h_mkdtemp("lang-daemon");
            char *argv[] = {py, script, NULL};
            struct h_proc p = h_spawn(argv, NULL, 1, dir, 1);
            char line[64] = "";
            h_read_line(&p, line, sizeof line, 20000);
            int st = h_wait(&p, 20000);
            cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0 && !strcmp(line, "bye"),
                      "%s run %d: status 0x%x, said '%s'", py, run, st, line);
            h_rmdir(dir);
        }
        ran++;
    }
    if (!ran)
        cr_skip_test("no CPython (/usr/bin/python3, pyenv 3.12, 3.13) to run");
}

/*
 * test_behaviour.c - owns the `behaviour` suite: the preload's first rule,
 * "never change the traced program's behaviour", checked end to end.
 *
 * build/fixtures/behaviour_matrix runs a deterministic matrix of every
 * interposed call (success and failure paths, EINTR, EMFILE, EOF, SCM_RIGHTS,
 * the _FORTIFY_SOURCE entry points, ...) and prints one line per call: return
 * value, errno, out-parameters, fd numbers. Run once plain and once under
 * libclosewatch.so, the two outputs must be identical line for line. A
 * difference is a behaviour change of the library (a consumed fd shifts every
 * later fd number; a clobbered errno shows as errno_after_success=...).
 *
 * The fixture is spawned here with fork/exec rather than h_spawn: the child
 * closes every fd above 2 before exec, so the fixture starts from the same
 * fd table whatever the test runner holds open, and stdin is /dev/null.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

/* The matrix prints ~500 lines; far fewer means it stopped early. */
#define MIN_LINES      400
#define RUN_TIMEOUT_MS 20000

struct run {
    char *out; /* stdout, NUL-terminated */
    size_t len;
    int status; /* wait status, -1 if killed on timeout */
    pid_t pid;
};

/*
 * Runs the fixture to completion, capturing stdout. With ring_dir set it runs
 * under the preload, recording into ring_dir, with the given sample period.
 */
static void run_matrix(struct run *r, const char *ring_dir, const char *sample_ms)
{
    const char *exe = h_path("fixtures/behaviour_matrix");
    cr_assert_eq(access(exe, X_OK), 0, "%s: %s (make build/fixtures/behaviour_matrix)", exe,
                 strerror(errno));
    int pfd[2];
    cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(pfd[1], 1);
        int dn = open("/dev/null", O_RDONLY);
        if (dn >= 0 && dn != 0) {
            dup2(dn, 0);
            close(dn);
        }
        /* Same starting fd table in every run: 0, 1, 2 only. */
        syscall(SYS_close_range, 3, ~0U, 0);
        unsetenv("LD_PRELOAD");
        unsetenv("CLOSEWATCH_DISABLE");
        if (ring_dir) {
            char lib[1024];
            snprintf(lib, sizeof lib, "%s/libclosewatch.so", h_build());
            setenv("LD_PRELOAD", lib, 1);
            setenv("CLOSEWATCH_DIR", ring_dir, 1);
            setenv("CLOSEWATCH_SAMPLE_MS", sample_ms, 1);
        }
        execl(exe, exe, (char *)NULL);
        _exit(127);
    }
    close(pfd[1]);

    size_t cap = 1 << 16;
    r->out = malloc(cap);
    r->len = 0;
    r->pid = pid;
    uint64_t end = h_now_ms() + RUN_TIMEOUT_MS;
    int timed_out = 0;
    for (;;) {
        int left = (int)(end - h_now_ms());
        struct pollfd p = {.fd = pfd[0], .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) == 0) {
            timed_out = 1;
            break;
        }
        if (r->len + 4096 > cap)
            r->out = realloc(r->out, cap *= 2);
        ssize_t n = read(pfd[0], r->out + r->len, cap - r->len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* EOF: the fixture and its children are gone or going */
        r->len += (size_t)n;
    }
    r->out[r->len] = 0;
    close(pfd[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    r->status = timed_out ? -1 : st;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Line i (0-based) of s into buf, without '\n'; 0 if s has fewer lines. */
static int line_at(const char *s, int i, char *buf, size_t len)
{
    for (; i > 0 && *s; s++)
        if (*s == '\n')
            i--;
    if (!*s)
        return 0;
    size_t n = strcspn(s, "\n");
    if (n >= len)
        n = len - 1;
    memcpy(buf, s, n);
    buf[n] = 0;
    return 1;
}

static void assert_clean_exit(const struct run *r, const char *what)
{
    cr_assert_neq(r->status, -1, "%s: fixture timed out after %d ms", what, RUN_TIMEOUT_MS);
    cr_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0, "%s: fixture %s %d", what,
              WIFEXITED(r->status) ? "exited" : "killed by signal",
              WIFEXITED(r->status) ? WEXITSTATUS(r->status) : WTERMSIG(r->status));
    cr_assert_geq(count_lines(r->out), MIN_LINES, "%s: only %d lines of output", what,
                  count_lines(r->out));
    char last[64];
    cr_assert(line_at(r->out, count_lines(r->out) - 1, last, sizeof last) && !strcmp(last, "done"),
              "%s: output does not end with \"done\"", what);
}

/* Both outputs, line for line; names the first difference and how many. */
static void assert_same_output(const struct run *a, const char *an, const struct run *b,
                               const char *bn)
{
    int na = count_lines(a->out), nb = count_lines(b->out);
    int n = na > nb ? na : nb, first = -1, ndiff = 0;
    char la[512], lb[512], fa[512] = "", fb[512] = "";
    for (int i = 0; i < n; i++) {
        int ha = line_at(a->out, i, la, sizeof la), hb = line_at(b->out, i, lb, sizeof lb);
        if (ha && hb && !strcmp(la, lb))
            continue;
        if (first < 0) {
            first = i;
            snprintf(fa, sizeof fa, "%s", ha ? la : "<no line>");
            snprintf(fb, sizeof fb, "%s", hb ? lb : "<no line>");
        }
        ndiff++;
    }
    if (first >= 0) {
        /* Keep both outputs for a human to diff. */
        char pa[128], pb[128];
        snprintf(pa, sizeof pa, "/tmp/cwtest-behaviour-%d-%s.out", (int)getpid(), an);
        snprintf(pb, sizeof pb, "/tmp/cwtest-behaviour-%d-%s.out", (int)getpid(), bn);
        FILE *f = fopen(pa, "w");
        if (f) {
            fwrite(a->out, 1, a->len, f);
            fclose(f);
        }
        f = fopen(pb, "w");
        if (f) {
            fwrite(b->out, 1, b->len, f);
            fclose(f);
        }
        cr_assert_fail("behaviour differs at line %d (%d differing lines of %d/%d):\n"
                       "  %-8s %s\n  %-8s %s\n(full outputs: %s %s)",
                       first + 1, ndiff, na, nb, an, fa, bn, fb, pa, pb);
    }
}

/*
 * The preload run must really have been traced: the process left its ring
 * (the library removes the ring only of socket-free processes), the ring
 * recorded events, and the sampler ran iff it was asked to.
 */
static void assert_traced(const struct run *r, const char *dir, int sampler_expected)
{
    char paths[4][512];
    int n = h_rings(dir, r->pid, paths, 4);
    cr_assert_geq(n, 1, "no ring file for pid %d in %s: was the preload active?", (int)r->pid, dir);
    struct cw_ring ring;
    h_open_ring(&ring, dir, r->pid);
    cr_assert_gt(ring.hdr.write_idx, 0, "the ring recorded no events");
    cr_assert_eq(ring.hdr.exit_state, CW_EXITED, "ring exit_state %u", ring.hdr.exit_state);
    if (sampler_expected)
        cr_assert_gt(ring.hdr.heartbeat_mono_ns, ring.hdr.start_mono_ns,
                     "CLOSEWATCH_SAMPLE_MS=10 but the sampler never ran");
    else
        cr_assert_eq(ring.hdr.heartbeat_mono_ns, ring.hdr.start_mono_ns,
                     "CLOSEWATCH_SAMPLE_MS=0 but the sampler ran");
    cw_ring_close(&ring);
}

/* The preload run's ring directory; removed by .fini even when an
 * assertion ended the test. */
static char *ring_dir;

static void remove_ring_dir(void)
{
    if (ring_dir)
        h_rmdir(ring_dir);
    free(ring_dir);
    ring_dir = NULL;
}

static void compare_with_preload(const char *sample_ms, int sampler_expected)
{
    struct run plain, traced;
    run_matrix(&plain, NULL, NULL);
    assert_clean_exit(&plain, "plain");

    ring_dir = h_mkdtemp("behaviour");
    run_matrix(&traced, ring_dir, sample_ms);
    assert_clean_exit(&traced, "preload");
    assert_same_output(&plain, "plain", &traced, "preload");
    assert_traced(&traced, ring_dir, sampler_expected);
    free(plain.out);
    free(traced.out);
}

/* Without this, a difference under the preload could be the fixture's own
 * nondeterminism rather than the library's doing. */
Test(behaviour, fixture_is_deterministic, .timeout = 60)
{
    struct run a, b;
    run_matrix(&a, NULL, NULL);
    assert_clean_exit(&a, "first");
    run_matrix(&b, NULL, NULL);
    assert_clean_exit(&b, "second");
    assert_same_output(&a, "first", &b, "second");
    free(a.out);
    free(b.out);
}

/* The sampler process is running (every 10 ms) throughout the matrix. */
Test(behaviour, identical_under_preload_with_sampler, .timeout = 60, .fini = remove_ring_dir)
{
    compare_with_preload("10", 1);
}

Test(behaviour, identical_under_preload_without_sampler, .timeout = 60, .fini = remove_ring_dir)
{
    compare_with_preload("0", 0);
}

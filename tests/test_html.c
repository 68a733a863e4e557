/*
 * test_html.c - the HTML report in a real browser: a leaking fixture runs
 * under `closewatch run --format=html`, Debian's chromium (headless, the
 * network cut off: every request goes to a proxy on a closed port, none
 * bypasses it) loads the file from disk, and the test reads the DOM it
 * dumps (counts, the group headline's file:line against the fixture's own
 * accept() line, escaped argv) and its console log (no message at all: the
 * page logs nothing, so any line is an error or a blocked fetch). A
 * screenshot goes to build/html-report.png. The same at 1,000 findings,
 * with the file's size and the render time logged; and a live report's
 * kernel view; and 1,000 findings in 50 groups built by hand (processes
 * without rings: one group each), hostile names included. Without chromium the
 * tests skip, saying how to install it.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../analyzer/report.h"
#include "../analyzer/view_build.h"
#include "harness.h"

#define RUN_TIMEOUT_MS 60000

static const char *chromium(void)
{
    static const char *const paths[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++)
        if (access(paths[i], X_OK) == 0)
            return paths[i];
    return NULL;
}

static void need_chromium(void)
{
    if (!chromium())
        cr_skip_test("chromium is not installed (scripts/install-test-deps.sh chromium, or "
                     "apt-get install --no-install-recommends chromium)");
}

static void redirect(int fd, const char *path, int flags)
{
    int f = open(path, flags, 0600);
    if (f < 0 || dup2(f, fd) < 0)
        _exit(126);
    close(f);
}

/* Runs argv with stdout and stderr in files; returns the exit status,
 * failing the test if it crashed or did not finish in time. */
static int run(char *const argv[], char *const env[], const char *out, const char *err)
{
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        unsetenv("LD_PRELOAD");
        unsetenv("CLOSEWATCH_DIR");
        unsetenv("CLOSEWATCH_SAMPLE_MS");
        unsetenv("CLOSEWATCH_DISABLE");
        for (int i = 0; env && env[i]; i++)
            putenv(env[i]);
        redirect(0, "/dev/null", O_RDONLY);
        redirect(1, out, O_WRONLY | O_CREAT | O_TRUNC);
        redirect(2, err, O_WRONLY | O_CREAT | O_TRUNC);
        setpgid(0, 0); /* chromium's helpers die with it on a timeout */
        execv(argv[0], argv);
        _exit(127);
    }
    struct h_proc p = {.pid = pid, .out_fd = -1};
    int status = h_wait(&p, RUN_TIMEOUT_MS);
    if (status == -1)
        kill(-pid, SIGKILL);
    cr_assert_neq(status, -1, "%s did not finish in %d ms", argv[0], RUN_TIMEOUT_MS);
    cr_assert(WIFEXITED(status), "%s killed by signal %d", argv[0], WTERMSIG(status));
    return WEXITSTATUS(status);
}

/* `closewatch run --format=html` on demo_server serving `clients` clients
 * and staying up 1 s, its sampler looking every 50 ms (points for the count
 * series); extra is one more argv word (the fixture ignores it; it shows in
 * the report's program line). Writes dir/report.html. */
static void make_report(const char *dir, const char *clients, const char *extra)
{
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=50", NULL};
    char outarg[1100], dirarg[1100], fixture[1024], out[1100], err[1100];
    snprintf(outarg, sizeof outarg, "-o%s/report.html", dir);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(fixture, sizeof fixture, "%s/fixtures/demo_server", h_build());
    snprintf(out, sizeof out, "%s/run.out", dir);
    snprintf(err, sizeof err, "%s/run.err", dir);
    char *argv[] = {(char *)h_path("closewatch"),
                    "run",
                    dirarg,
                    "--grace=0.2",
                    "--format=html",
                    outarg,
                    "--",
                    fixture,
                    (char *)clients,
                    "1.0",
                    (char *)extra,
                    NULL};
    int code = run(argv, env, out, err);
    char *e = h_slurp(err, NULL);
    cr_assert_eq(code, 0, "closewatch run: exit %d: %s", code, e ? e : "");
    free(e);
}

struct page {
    char *dom, *log;
    double seconds; /* wall time of the --dump-dom run */
};

/* Chromium headless on file://path with the network cut off: all traffic
 * through a proxy at 127.0.0.1:9 (closed), "<-loopback>" so not even
 * loopback bypasses it; a private profile so runs do not share state.
 * mode is --dump-dom or --screenshot=PATH. */
static struct page browse(const char *dir, const char *path, const char *mode)
{
    char url[1100], profile[1100], out[1100], err[1100];
    snprintf(url, sizeof url, "file://%s", path);
    snprintf(profile, sizeof profile, "--user-data-dir=%s/profile", dir);
    snprintf(out, sizeof out, "%s/chromium.out", dir);
    snprintf(err, sizeof err, "%s/chromium.err", dir);
    char *argv[] = {(char *)chromium(), "--headless",
                    /* as root chromium refuses to run sandboxed */
                    geteuid() == 0 ? "--no-sandbox" : "--headless", "--disable-gpu",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--proxy-server=127.0.0.1:9",
                    "--proxy-bypass-list=<-loopback>", "--enable-logging=stderr", "--v=0",
                    "--window-size=1200,1600", profile, (char *)mode, url, NULL};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int code = run(argv, NULL, out, err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    struct page pg = {.dom = h_slurp(out, NULL), .log = h_slurp(err, NULL)};
    pg.seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    cr_assert(pg.dom && pg.log);
    cr_assert_eq(code, 0, "chromium exit %d:\n%s", code, pg.log);
    return pg;
}

static void page_free(struct page *p)
{
    free(p->dom);
    free(p->log);
}

/* The page's console said nothing: chromium logs each console message
 * (errors, CSP refusals of a fetch) as ":CONSOLE(" / ":CONSOLE:" lines. */
static void no_console_messages(const struct page *p)
{
    const char *m = strstr(p->log, ":CONSOLE");
    if (m) {
        const char *eol = strchr(m, '\n');
        cr_assert_fail("console message: %.*s", eol ? (int)(eol - m) : 300, m);
    }
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path); /* best effort: a leftover is only clutter */
    return 0;
}

/* The test's directory with the ring directory and chromium's profile in it. */
static void rm_tree(char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* The number in the summary table's row for kind. */
static int summary_count(const char *dom, const char *kind)
{
    char row[96];
    snprintf(row, sizeof row, "<tr data-kind=\"%s\">", kind);
    const char *r = strstr(dom, row);
    cr_assert(r, "no summary row for %s", kind);
    const char *n = strstr(r, "<td class=\"n\">");
    cr_assert(n);
    return atoi(n + strlen("<td class=\"n\">"));
}

/* The line of demo_server.c that calls accept(), read from the source. */
static int accept_line(char *path, size_t len)
{
    snprintf(path, len, "%s/../tests/fixtures/demo_server.c", h_build());
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s: %s", path, strerror(errno));
    char buf[512];
    int line = 0, found = 0;
    while (!found && fgets(buf, sizeof buf, f)) {
        line++;
        found = strstr(buf, "accept(") != NULL;
    }
    fclose(f);
    cr_assert(found, "no accept( in %s", path);
    return line;
}

/* The first group's <summary>...</summary>, copied. */
static char *group_headline(const char *dom)
{
    const char *g = strstr(dom, "<details class=\"group error\" id=\"g1\"");
    cr_assert(g, "no first group");
    const char *s = strstr(g, "<summary>"), *e = s ? strstr(s, "</summary>") : NULL;
    cr_assert(s && e);
    return strndup(s, (size_t)(e - s));
}

Test(html, demo_server_report_in_chromium, .timeout = 180)
{
    need_chromium();
    char *dir = h_mkdtemp("html");
    /* An argv word a careless report would turn into an element. */
    make_report(dir, "3", "<img id=xss src=x onerror=alert(1)>&amp;");
    char path[1100];
    snprintf(path, sizeof path, "%s/report.html", dir);

    struct page p = browse(dir, path, "--dump-dom");
    no_console_messages(&p);
    cr_assert_eq(summary_count(p.dom, "close_wait"), 3);
    cr_assert_eq(summary_count(p.dom, "suppressed"), 0);
    cr_assert_eq(count_of(p.dom, "<details class=\"group"), 1, "one group");
    cr_assert(strstr(p.dom, "data-kind=\"close_wait\" data-n=\"3\" open=\"\""),
              "the group is open and holds 3 findings");
    cr_assert_eq(count_of(p.dom, "<tr class=\"sock\">"), 3);
    cr_assert_eq(count_of(p.dom, "<g class=\"life\""), 3, "one timeline lane per socket");
    cr_assert_eq(count_of(p.dom, "<rect class=\"cw\""), 3);

    char src[1100], want[64];
    int line = accept_line(src, sizeof src);
    snprintf(want, sizeof want, "/demo_server.c:%d</code>", line);
    char *head = group_headline(p.dom);
    cr_assert(strstr(head, want), "headline lacks demo_server.c:%d: %s", line, head);
    cr_assert(strstr(head, "3 sockets in CLOSE_WAIT"), "%s", head);
    free(head);
    cr_assert(strstr(p.dom, "data-stack=\"open\""), "no open stack");
    /* The count series: the sampler saw the 3 sockets in CLOSE_WAIT during
     * the second the server stayed up. */
    const char *fig = strstr(p.dom, "<figure class=\"series\"");
    cr_assert(fig, "no chart of the counts over time");
    const char *pts = strstr(fig, "data-points=\"");
    cr_assert(pts && atoi(pts + strlen("data-points=\"")) >= 2, "%.200s", fig);
    cr_assert(strstr(fig, "data-peak-close-wait=\"3\""), "%.200s", fig);
    cr_assert(strstr(fig, "<polyline class=\"cw\""));
    cr_assert(strstr(p.dom, "data-stack=\"eof\""), "no EOF stack");

    /* The argv word is text, not markup. */
    cr_assert_null(strstr(p.dom, "id=\"xss\""), "argv became an element");
    cr_assert(strstr(p.dom, "&lt;img id=xss src=x onerror=alert(1)&gt;&amp;amp;"),
              "escaped argv missing");
    cr_assert(strstr(p.dom, "SUMMARY: closewatch: 3 findings"));
    page_free(&p);

    const char *shot = h_path("html-report.png");
    char arg[1100];
    snprintf(arg, sizeof arg, "--screenshot=%s", shot);
    unlink(shot);
    p = browse(dir, path, arg);
    no_console_messages(&p);
    size_t len = 0;
    char *png = h_slurp(shot, &len);
    cr_assert(png && len > 1000 && !memcmp(png, "\x89PNG", 4), "no screenshot at %s", shot);
    free(png);
    page_free(&p);
    rm_tree(dir);
}

Test(html, thousand_findings_size_and_render_time, .timeout = 240)
{
    need_chromium();
    /* 1,000 leaked sockets need more than the usual 1,024 fds. */
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < 1100)
        cr_skip_test("RLIMIT_NOFILE hard limit %lu is below the 1,100 fds the fixture needs",
                     (unsigned long)rl.rlim_max);
    if (rl.rlim_cur < 1100) {
        rl.rlim_cur = 1100;
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    char *dir = h_mkdtemp("html1k");
    make_report(dir, "1000", NULL);
    char path[1100];
    snprintf(path, sizeof path, "%s/report.html", dir);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);

    /* Chromium's own start-up, to tell it from the report's rendering. */
    char empty[1100];
    snprintf(empty, sizeof empty, "%s/empty.html", dir);
    FILE *f = fopen(empty, "w");
    cr_assert(f);
    fputs("<!DOCTYPE html><title>empty</title>", f);
    fclose(f);
    struct page base = browse(dir, empty, "--dump-dom");
    struct page p = browse(dir, path, "--dump-dom");
    struct page again = browse(dir, empty, "--dump-dom"); /* the first run fills the profile */
    if (again.seconds < base.seconds)
        base.seconds = again.seconds;
    page_free(&again);
    no_console_messages(&p);
    cr_assert_eq(summary_count(p.dom, "close_wait"), 1000);
    cr_assert(strstr(p.dom, "data-kind=\"close_wait\" data-n=\"1000\""));
    /* Every socket is in the file, 10 up front and the rest behind a click;
     * the timeline draws an even sample. */
    cr_assert_eq(count_of(p.dom, "<tr class=\"sock\">"), 1000);
    cr_assert(strstr(p.dom, "<details class=\"more\"><summary>990 more sockets</summary>"));
    cr_assert_eq(count_of(p.dom, "<g class=\"life\""), 200);
    cr_log_info("html report at 1,000 findings: %lld bytes; chromium --dump-dom %.2f s "
                "(an empty page %.2f s)",
                (long long)st.st_size, p.seconds, base.seconds);
    FILE *m = fopen(h_path("html-1000.txt"), "w");
    if (m) {
        fprintf(m, "bytes %lld\ndump_dom_s %.3f\nempty_page_s %.3f\n", (long long)st.st_size,
                p.seconds, base.seconds);
        fclose(m);
    }
    cr_assert_lt(st.st_size, 2 * 1024 * 1024, "report of %lld bytes", (long long)st.st_size);
    cr_assert_lt(p.seconds, 30.0);
    page_free(&base);
    page_free(&p);
    rm_tree(dir);
}

static int three_in_close_wait(void *pid)
{
    return h_kernel_close_wait(*(int *)pid) >= 3;
}

/* A live process: the report shows the kernel's view of its sockets. */
Test(html, live_report_has_the_kernel_view, .timeout = 120)
{
    need_chromium();
    char *dir = h_mkdtemp("htmllive");
    char fixture[1024];
    snprintf(fixture, sizeof fixture, "%s/fixtures/demo_server", h_build());
    char *argv[] = {fixture, "3", "60", NULL};
    struct h_proc srv = h_spawn(argv, NULL, 1, dir, 0);
    int pid = srv.pid;
    cr_assert(h_wait_for(three_in_close_wait, &pid, 20000), "no 3 sockets in CLOSE_WAIT");

    char outarg[1200], dirarg[1100], pidarg[16], out[1100], err[1100], path[1100];
    snprintf(path, sizeof path, "%s/live.html", dir);
    snprintf(outarg, sizeof outarg, "-o%s", path);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(pidarg, sizeof pidarg, "%d", pid);
    snprintf(out, sizeof out, "%s/report.out", dir);
    snprintf(err, sizeof err, "%s/report.err", dir);
    char *rep[] = {(char *)h_path("closewatch"),
                   "report",
                   "--format=html",
                   "--grace=0",
                   dirarg,
                   outarg,
                   pidarg,
                   NULL};
    int code = run(rep, NULL, out, err);
    kill(pid, SIGKILL);
    h_wait(&srv, 5000);
    cr_assert_eq(code, 1, "closewatch report: exit %d (findings expected)", code);

    struct page p = browse(dir, path, "--dump-dom");
    no_console_messages(&p);
    const char *k = strstr(p.dom, "<table id=\"kernel\">");
    cr_assert(k, "no kernel view");
    char want[64];
    snprintf(want, sizeof want, "<td class=\"n\">%d</td>", pid);
    cr_assert(strstr(k, want), "kernel view lacks pid %d", pid);
    cr_assert(strstr(k, "CLOSE_WAIT 3"), "%.300s", k);
    cr_assert_eq(summary_count(p.dom, "close_wait"), 3);
    page_free(&p);
    rm_tree(dir);
}

/* 50 processes without rings (one group each: findings without stacks are
 * grouped by process), 20 CLOSE_WAIT sockets each, names that are markup. */
static void many_groups_report(const char *path)
{
    struct cw_options opt = {.grace_s = 5.0, .spin_threshold = 100};
    struct cw_analysis a;
    cw_analysis_init(&a, &opt);
    a.now_realtime_ns = 1700000060000000000ull;
    const int nproc = 50, per = 20;
    a.procs = calloc((size_t)nproc, sizeof *a.procs);
    a.findings = calloc((size_t)(nproc * per), sizeof *a.findings);
    cr_assert(a.procs && a.findings);
    a.cap = nproc * per;
    for (int i = 0; i < nproc; i++) {
        struct cw_process *p = calloc(1, sizeof *p);
        cr_assert(p);
        a.procs[a.nprocs++] = p;
        p->pid = 1000 + i;
        p->ppid = 1;
        snprintf(p->exe, sizeof p->exe, "/srv/<b id=bold%d>svc</b>", i);
        snprintf(p->cmdline, sizeof p->cmdline, "svc --name '</script><script>alert(%d)</script>'",
                 i);
        if (i % 2)
            p->cmdline[0] = '\0'; /* shown by its exe */
        p->start_realtime_ns = 1700000000000000000ull;
        p->start_mono_ns = 1000000000ull;
        p->end_mono_ns = p->start_mono_ns + 60000000000ull;
        p->end = CW_END_RUNNING;
        for (int k = 0; k < per; k++) {
            struct cw_finding *f = &a.findings[a.nfindings++];
            f->kind = CW_K_CLOSE_WAIT;
            f->proc = p;
            f->fd = 10 + k;
            f->family = AF_INET;
            f->type = SOCK_STREAM;
            f->origin = CW_ORIGIN_ACCEPT;
            f->tcp_state = CW_TCP_CLOSE_WAIT;
            f->eof = CW_EOF_OBSERVED;
            f->open_ns = p->start_mono_ns + (uint64_t)(k + 1) * 2000000000ull;
            f->eof_ns = f->open_ns + 500000000ull;
            f->seconds_in_close_wait = 60.0 - (double)(k + 1) * 2 - 0.5;
        }
    }
    struct cw_symbolizer *sym = cw_symbolizer_new();
    cr_assert(sym);
    struct cw_view *v = cw_view_build(&a, sym, NULL);
    FILE *out = fopen(path, "w");
    cr_assert(out);
    cw_report_html(out, v);
    fclose(out);
    cw_view_free(v);
    cw_symbolizer_free(sym);
    cw_analysis_free(&a);
}

Test(html, thousand_findings_in_fifty_groups, .timeout = 120)
{
    need_chromium();
    char *dir = h_mkdtemp("html50");
    char path[1100];
    snprintf(path, sizeof path, "%s/groups.html", dir);
    many_groups_report(path);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    struct page p = browse(dir, path, "--dump-dom");
    no_console_messages(&p);
    cr_assert_eq(summary_count(p.dom, "close_wait"), 1000);
    cr_assert_eq(count_of(p.dom, "<details class=\"group error\""), 50);
    /* The first three groups open, the other 47 collapsed. */
    cr_assert_eq(count_of(p.dom, "data-n=\"20\" open=\"\">"), 3);
    cr_assert_eq(count_of(p.dom, "data-n=\"20\">"), 47);
    /* Per group 10 socket rows up front, the other 10 behind a click. */
    cr_assert_eq(count_of(p.dom, "<summary>10 more sockets</summary>"), 50);
    cr_assert_eq(count_of(p.dom, "<g class=\"life\""), 1000);
    /* Names that are markup stay text. */
    cr_assert_null(strstr(p.dom, "<b id=\"bold"), "an exe name became an element");
    cr_assert(strstr(p.dom, "/srv/&lt;b id=bold1&gt;svc&lt;/b&gt;"));
    cr_assert(strstr(p.dom, "svc --name '&lt;/script&gt;&lt;script&gt;alert(0)&lt;/script&gt;'"));
    cr_assert_eq(count_of(p.dom, "<script>"), 1, "only the report's own script");
    cr_log_info("html report, 1,000 findings in 50 groups: %lld bytes; chromium --dump-dom %.2f s",
                (long long)st.st_size, p.seconds);
    FILE *m = fopen(h_path("html-1000-groups.txt"), "w");
    if (m) {
        fprintf(m, "groups50_bytes %lld\ngroups50_dump_dom_s %.3f\n", (long long)st.st_size,
                p.seconds);
        fclose(m);
    }
    page_free(&p);
    rm_tree(dir);
}

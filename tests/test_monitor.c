/*
 * test_monitor.c - watching a live leak grow, against a real leaking server
 * (tests/fixtures/accept_leaker.c under the preload). `closewatch metrics`:
 * the values and the opening-place label printed once, the node_exporter
 * textfile, and a real Prometheus scraping `--listen` and storing the series
 * as it grows. `closewatch watch`: piped (a line per look, a line when
 * CLOSE_WAIT grows, naming where) and on a real terminal (tmux), redrawn in
 * place with sparklines.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "jsonq.h"

#define COND_MS 20000

struct leaker {
    struct h_proc p;
    char *dir;
    int port;
    int leaked;
};

static void leaker_start(struct leaker *l)
{
    l->dir = h_mkdtemp("metrics");
    char *argv[] = {(char *)h_path("fixtures/accept_leaker"), NULL};
    l->p = h_spawn(argv, NULL, 1, l->dir, 1);
    char line[128];
    cr_assert(h_read_line(&l->p, line, sizeof line, COND_MS), "accept_leaker did not start");
    cr_assert_eq(sscanf(line, "port %d", &l->port), 1, "%s", line);
    l->leaked = 0;
}

/* n clients connect, send a byte and hang up; returns once the server has
 * seen every EOF (and so leaked every socket). */
static void leak(struct leaker *l, int n)
{
    for (int i = 0; i < n; i++) {
        int fd = h_connect(l->port);
        cr_assert_eq(write(fd, "x", 1), 1);
        close(fd);
    }
    char line[128];
    for (int i = 0; i < n; i++)
        cr_assert(h_read_line(&l->p, line, sizeof line, COND_MS) && !strncmp(line, "eof ", 4),
                  "the server did not see EOF %d", i + 1);
    l->leaked += n;
}

static void leaker_stop(struct leaker *l)
{
    kill(l->p.pid, SIGKILL);
    h_wait(&l->p, COND_MS);
    h_rmdir(l->dir);
    free(l->dir);
}

/* The value of the first sample line starting with prefix (NaN if none). */
static double sample(const char *text, const char *prefix)
{
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, prefix, strlen(prefix))) {
            const char *sp = strchr(p, '}');
            return sp ? strtod(sp + 1, NULL) : NAN;
        }
    return NAN;
}

/* The line of tests/fixtures/accept_leaker.c that holds marker. */
static int source_line(const char *marker)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/../tests/fixtures/accept_leaker.c", h_build());
    return h_marker_line(path, marker);
}

struct metrics_look {
    struct leaker *l;
    char grace[16];
    char *text;
    int want;
};

static int findings_reach(void *arg)
{
    struct metrics_look *m = arg;
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)m->l->p.pid);
    char dirarg[700];
    snprintf(dirarg, sizeof dirarg, "--dir=%s", m->l->dir);
    char *args[] = {"metrics", m->grace, dirarg, pid, NULL};
    free(m->text);
    cr_assert_eq(h_closewatch(m->l->dir, args, &m->text), 0, "%s", m->text);
    char prefix[128];
    snprintf(prefix, sizeof prefix, "closewatch_findings{pid=\"%d\"", (int)m->l->p.pid);
    for (const char *p = m->text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        const char *eol = strchr(p, '\n'), *kind = strstr(p, "kind=\"close_wait\"");
        if (!strncmp(p, prefix, strlen(prefix)) && kind && (!eol || kind < eol))
            return strtod(strchr(p, '}') + 1, NULL) == m->want;
    }
    return 0;
}

Test(metrics, once_gives_states_findings_fds_and_the_accept_line, .timeout = 60)
{
    struct leaker l;
    leaker_start(&l);
    leak(&l, 3);
    struct metrics_look m = {.l = &l, .grace = "--grace=0.2", .want = 3};
    cr_assert(h_wait_for(findings_reach, &m, COND_MS), "close_wait findings never reached 3:\n%s",
              m.text);
    const char *t = m.text;
    cr_assert(strstr(t, "# TYPE closewatch_findings gauge\n"), "%s", t);
    cr_assert(!strcmp(t + strlen(t) - 6, "# EOF\n"), "OpenMetrics ends with # EOF:\n%s", t);

    char prefix[200];
    snprintf(prefix, sizeof prefix,
             "closewatch_sockets{pid=\"%d\",exe=\"%s\",state=\"CLOSE_WAIT\"}", (int)l.p.pid,
             h_path("fixtures/accept_leaker"));
    cr_assert_eq(sample(t, prefix), 3, "%s", t);
    snprintf(prefix, sizeof prefix, "closewatch_fds_open{pid=\"%d\"", (int)l.p.pid);
    cr_assert_geq(sample(t, prefix), 4, "3 leaked sockets and the listener:\n%s", t);
    snprintf(prefix, sizeof prefix, "closewatch_fds_limit{pid=\"%d\"", (int)l.p.pid);
    cr_assert_gt(sample(t, prefix), 0, "%s", t);

    /* The place is the accept() line of the fixture's own source. */
    char where[200];
    snprintf(where, sizeof where, "/tests/fixtures/accept_leaker.c:%d\"} 3\n",
             source_line("LEAKED-HERE"));
    cr_assert(strstr(t, "closewatch_close_wait_by_location{") && strstr(t, where),
              "no location ending %s in:\n%s", where, t);

    /* --top=0: every place summed as "other", nothing lost. */
    char pid[16], dirarg[700];
    snprintf(pid, sizeof pid, "%d", (int)l.p.pid);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", l.dir);
    char *out;
    char *args[] = {"metrics", "--grace=0.2", "--top=0", dirarg, pid, NULL};
    cr_assert_eq(h_closewatch(l.dir, args, &out), 0, "%s", out);
    cr_assert(strstr(out, "location=\"other\"} 3\n"), "%s", out);
    cr_assert_null(strstr(out, "accept_leaker.c:"), "%s", out);
    free(out);
    free(m.text);
    leaker_stop(&l);
}

Test(metrics, textfile_is_replaced_whole, .timeout = 60)
{
    struct leaker l;
    leaker_start(&l);
    leak(&l, 2);
    char path[700], arg[720], dirarg[700], pid[16];
    snprintf(path, sizeof path, "%s/closewatch.prom", l.dir);
    snprintf(arg, sizeof arg, "--textfile=%s", path);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", l.dir);
    snprintf(pid, sizeof pid, "%d", (int)l.p.pid);
    char *out;
    char *args[] = {"metrics", arg, "--interval=0.1", "--count=3", "--grace=0", dirarg, pid, NULL};
    cr_assert_eq(h_closewatch(l.dir, args, &out), 0, "%s", out);
    cr_assert_str_eq(out, "", "the textfile form prints nothing");
    free(out);
    char *text = h_slurp(path, NULL);
    cr_assert_not_null(text, "%s was not written", path);
    char prefix[200];
    snprintf(prefix, sizeof prefix, "closewatch_sockets{pid=\"%d\"", (int)l.p.pid);
    cr_assert(strstr(text, prefix) && strstr(text, "# EOF\n"), "%s", text);
    free(text);
    /* Written through a temporary file renamed over it: none is left. */
    DIR *d = opendir(l.dir);
    cr_assert_not_null(d);
    for (struct dirent *e; (e = readdir(d));)
        cr_assert_null(strstr(e->d_name, ".tmp"), "left behind: %s", e->d_name);
    closedir(d);

    /* Bad usage is a clear error. */
    char *bad[] = {"metrics", "--listen=127.0.0.1:1", arg, pid, NULL};
    cr_assert_eq(h_closewatch(l.dir, bad, &out), 2);
    free(out);
    char *nopid[] = {"metrics", NULL};
    cr_assert_eq(h_closewatch(l.dir, nopid, &out), 2);
    free(out);
    leaker_stop(&l);
}

/* ---- a real Prometheus --------------------------------------------------- */

static int free_port(void)
{
    int port, fd = h_listen(&port);
    close(fd);
    return port;
}

/* GET path from 127.0.0.1:port; the body, or NULL. */
static char *http_get(int port, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(0x7f000001),
                            .sin_port = htons((uint16_t)port)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    char req[2048];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return NULL;
    }
    size_t len = 0, cap = 65536;
    char *buf = malloc(cap);
    for (ssize_t r; buf && (r = read(fd, buf + len, cap - 1 - len)) > 0;) {
        len += (size_t)r;
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
    }
    close(fd);
    if (!buf)
        return NULL;
    buf[len] = 0;
    char *body = strstr(buf, "\r\n\r\n");
    char *copy =
        body && !strncmp(buf, "HTTP/1.", 7) && strstr(buf, " 200 ") ? strdup(body + 4) : NULL;
    free(buf);
    return copy;
}

struct prom_query {
    int port;
    const char *query; /* URL-encoded */
    double want;
    double got;
};

/* The query's first value equals want. */
static int prom_value_is(void *arg)
{
    struct prom_query *q = arg;
    char path[1024];
    snprintf(path, sizeof path, "/api/v1/query?query=%s", q->query);
    char *body = http_get(q->port, path);
    if (!body)
        return 0;
    char err[256];
    struct jv *doc = jq_parse(body, err, sizeof err);
    free(body);
    if (!doc)
        return 0;
    const char *v = jq_str(doc, "data.result.0.value.1");
    q->got = v ? strtod(v, NULL) : NAN;
    jq_free(doc);
    return q->got == q->want;
}

Test(metrics, prometheus_scrapes_the_growing_leak, .timeout = 120)
{
    if (access("/usr/bin/prometheus", X_OK) != 0)
        cr_skip_test("/usr/bin/prometheus is not installed (scripts/install-test-deps.sh "
                     "installs Debian's prometheus package)");
    struct leaker l;
    leaker_start(&l);
    int mport = free_port(), pport = free_port();
    char listen[64], dirarg[700], pid[16];
    snprintf(listen, sizeof listen, "--listen=127.0.0.1:%d", mport);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", l.dir);
    snprintf(pid, sizeof pid, "%d", (int)l.p.pid);
    char *margv[] = {
        (char *)h_path("closewatch"), "metrics", listen, "--grace=0.2", dirarg, pid, NULL};
    struct h_proc metrics = h_spawn(margv, NULL, 0, l.dir, 0);

    char conf[700], data[700], weblisten[64], confarg[720], dataarg[720];
    snprintf(conf, sizeof conf, "%s/prometheus.yml", l.dir);
    snprintf(data, sizeof data, "%s/data", l.dir);
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: closewatch\n    static_configs:\n"
            "      - targets: ['127.0.0.1:%d']\n",
            mport);
    fclose(f);
    snprintf(weblisten, sizeof weblisten, "--web.listen-address=127.0.0.1:%d", pport);
    snprintf(confarg, sizeof confarg, "--config.file=%s", conf);
    snprintf(dataarg, sizeof dataarg, "--storage.tsdb.path=%s", data);
    char *pargv[] = {"/usr/bin/prometheus", confarg, dataarg, weblisten, "--log.level=warn", NULL};
    struct h_proc prom = h_spawn(pargv, NULL, 0, l.dir, 0);

    /* Scraped, no leak yet; then the leak grows and Prometheus sees it. */
    struct prom_query up = {pport, "up%7Bjob%3D%22closewatch%22%7D", 1, NAN};
    cr_assert(h_wait_for(prom_value_is, &up, 60000), "Prometheus never scraped closewatch (up=%g)",
              up.got);
    struct prom_query cw = {pport, "closewatch_findings%7Bkind%3D%22close_wait%22%7D", 0, NAN};
    cr_assert(h_wait_for(prom_value_is, &cw, COND_MS), "got %g, want 0", cw.got);
    leak(&l, 2);
    cw.want = 2;
    cr_assert(h_wait_for(prom_value_is, &cw, COND_MS), "got %g, want 2", cw.got);
    leak(&l, 3);
    cw.want = 5;
    cr_assert(h_wait_for(prom_value_is, &cw, COND_MS), "got %g, want 5", cw.got);
    /* The stored series went 0 -> 5: what an alert on growth looks at. */
    struct prom_query growth = {
        pport,
        "max_over_time(closewatch_findings%7Bkind%3D%22close_wait%22%7D%5B10m%5D)"
        "-min_over_time(closewatch_findings%7Bkind%3D%22close_wait%22%7D%5B10m%5D)",
        5, NAN};
    cr_assert(prom_value_is(&growth), "growth %g", growth.got);
    struct prom_query place = {pport,
                               "sum(closewatch_close_wait_by_location%7Blocation%3D~%22.*accept_"
                               "leaker.c%3A%5B0-9%5D%2B%22%7D)",
                               5, NAN};
    cr_assert(h_wait_for(prom_value_is, &place, COND_MS), "by location: %g", place.got);

    kill(prom.pid, SIGTERM);
    cr_assert_neq(h_wait(&prom, COND_MS), -1);
    kill(metrics.pid, SIGTERM);
    int st = h_wait(&metrics, COND_MS);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "closewatch metrics status %d", st);
    leaker_stop(&l);
}

/* ---- watch ------------------------------------------------------------------ */

/* Reads the watch's lines until one contains needle; it, or NULL on timeout. */
static const char *line_with(struct h_proc *w, const char *needle, char *buf, size_t len,
                             int *socket_lines)
{
    uint64_t end = h_now_ms() + COND_MS;
    while (h_now_ms() < end) {
        if (!h_read_line(w, buf, len, (int)(end - h_now_ms())))
            return NULL;
        if (socket_lines && !strncmp(buf, "  CLOSE_WAIT fd ", 16))
            (*socket_lines)++;
        if (strstr(buf, needle))
            return buf;
    }
    return NULL;
}

Test(watch, piped_says_when_close_wait_grows_and_where, .timeout = 90)
{
    struct leaker l;
    leaker_start(&l);
    char pid[16], dirarg[700];
    snprintf(pid, sizeof pid, "%d", (int)l.p.pid);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", l.dir);
    char *argv[] = {(char *)h_path("closewatch"), "watch", "--interval=0.2", dirarg, pid, NULL};
    struct h_proc w = h_spawn(argv, NULL, 0, l.dir, 1);
    char line[2048], prefix[64];
    snprintf(prefix, sizeof prefix, " pid %s: 1 sockets: LISTEN 1 non-TCP 0", pid);
    cr_assert(line_with(&w, prefix, line, sizeof line, NULL), "no first look");

    char opened[200], eof[200];
    snprintf(opened, sizeof opened, "/tests/fixtures/accept_leaker.c:%d (eof observed at ",
             source_line("LEAKED-HERE"));
    snprintf(eof, sizeof eof, "/tests/fixtures/accept_leaker.c:%d)", source_line("EOF-HERE"));
    int sockets = 0;
    leak(&l, 2);
    cr_assert(line_with(&w, ": CLOSE_WAIT +2 in the last ", line, sizeof line, &sockets),
              "no growth line for +2");
    cr_assert(strstr(line, ", 2 of them opened at ") && strstr(line, opened) && strstr(line, eof),
              "growth not attributed to the accept and recv lines: %s", line);
    leak(&l, 3);
    cr_assert(line_with(&w, ": CLOSE_WAIT +5 in the last ", line, sizeof line, &sockets),
              "no growth line for +5");
    cr_assert(strstr(line, ", 5 of them opened at ") && strstr(line, opened), "%s", line);
    /* Each socket listed once, when it was new: one line per look otherwise. */
    cr_assert_eq(sockets, 5, "CLOSE_WAIT socket lines: %d", sockets);

    /* The watched process ends: so does the watch. */
    kill(l.p.pid, SIGKILL);
    snprintf(prefix, sizeof prefix, "pid %s exited", pid);
    cr_assert(line_with(&w, prefix, line, sizeof line, NULL), "no exit line");
    int st = h_wait(&w, COND_MS);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "watch status %d", st);
    h_wait(&l.p, COND_MS);
    h_rmdir(l.dir);
    free(l.dir);
}

/* tmux's own server for this test, so no user session is touched. Output
 * goes through a file: the tmux server a new-session starts keeps its
 * stdout open, so a pipe would never reach EOF. */
static int tmux(const char *sock, char *const args[], char **out)
{
    char *argv[16] = {"tmux", "-L", (char *)sock};
    int n = 3;
    for (int i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char path[128];
    snprintf(path, sizeof path, "/tmp/cwtest-tmux-%d.out", (int)getpid());
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int null = open("/dev/null", O_RDWR);
        if (fd < 0 || null < 0 || dup2(fd, 1) < 0 || dup2(null, 0) < 0 || dup2(null, 2) < 0)
            _exit(126);
        execvp("tmux", argv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    if (out)
        *out = h_slurp(path, NULL);
    unlink(path);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

struct pane {
    const char *sock;
    const char *needle;
    char *text;
};

static int pane_shows(void *arg)
{
    struct pane *p = arg;
    free(p->text);
    char *args[] = {"capture-pane", "-p", "-t", "cw", NULL};
    if (tmux(p->sock, args, &p->text) != 0 || !p->text)
        return 0;
    return strstr(p->text, p->needle) != NULL;
}

Test(watch, terminal_redraws_in_place_with_sparklines, .timeout = 90)
{
    if (system("command -v tmux >/dev/null 2>&1") != 0)
        cr_skip_test("tmux is not installed (scripts/install-test-deps.sh installs it)");
    struct leaker l;
    leaker_start(&l);
    char sock[64], cmd[1400];
    snprintf(sock, sizeof sock, "cwtest-%d", (int)getpid());
    snprintf(cmd, sizeof cmd, "LANG=C.UTF-8 %s watch --interval=0.2 --dir=%s %d",
             h_path("closewatch"), l.dir, (int)l.p.pid);
    char *start[] = {"new-session", "-d", "-s", "cw", "-x", "120", "-y", "40", cmd, NULL};
    cr_assert_eq(tmux(sock, start, NULL), 0, "tmux new-session failed");
    struct pane p = {.sock = sock, .needle = "LISTEN 1"};
    cr_assert(h_wait_for(pane_shows, &p, COND_MS), "no first look on the terminal:\n%s", p.text);
    leak(&l, 3);
    p.needle = "CLOSE_WAIT +3 in the last ";
    cr_assert(h_wait_for(pane_shows, &p, COND_MS), "no growth on the terminal:\n%s", p.text);
    /* A chart, drawn with block characters; the top line once: redrawn, not scrolled. */
    cr_assert(strstr(p.text, "\u2588"), "no sparkline:\n%s", p.text);
    const char *first = strstr(p.text, "closewatch watch");
    cr_assert(first && !strstr(first + 1, "closewatch watch"), "not redrawn in place:\n%s", p.text);
    char listed[64];
    snprintf(listed, sizeof listed, "accept_leaker.c:%d", source_line("LEAKED-HERE"));
    cr_assert(strstr(p.text, listed), "the sockets' opening line is not shown:\n%s", p.text);
    free(p.text);
    char *kill_server[] = {"kill-server", NULL};
    tmux(sock, kill_server, NULL);
    leaker_stop(&l);
}

/* ---- the count series in the JSON report ------------------------------------ */

struct series_look {
    struct leaker *l;
    int last_close_wait, first_close_wait, n;
};

static int series_reaches(void *arg)
{
    struct series_look *s = arg;
    char pid[16], dirarg[700], *out;
    snprintf(pid, sizeof pid, "%d", (int)s->l->p.pid);
    snprintf(dirarg, sizeof dirarg, "--dir=%s", s->l->dir);
    char *args[] = {"report", "--format=json", dirarg, pid, NULL};
    h_closewatch(s->l->dir, args, &out);
    char err[256];
    struct jv *doc = jq_parse(out, err, sizeof err);
    cr_assert_not_null(doc, "%s: %s", err, out);
    free(out);
    s->n = jq_len(doc, "processes.0.series");
    char path[64];
    snprintf(path, sizeof path, "processes.0.series.%d.close_wait", s->n - 1);
    s->last_close_wait = s->n > 0 ? (int)jq_num(doc, path) : -1;
    s->first_close_wait = s->n > 0 ? (int)jq_num(doc, "processes.0.series.0.close_wait") : -1;
    jq_free(doc);
    return s->last_close_wait == 3;
}

static int series_has_points(void *arg)
{
    series_reaches(arg);
    return ((struct series_look *)arg)->n >= 1;
}

Test(metrics, json_report_carries_the_count_series, .timeout = 60)
{
    struct leaker l;
    l.dir = h_mkdtemp("series");
    char *argv[] = {(char *)h_path("fixtures/accept_leaker"), NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=50", NULL};
    l.p = h_spawn(argv, env, 1, l.dir, 1);
    char line[128];
    cr_assert(h_read_line(&l.p, line, sizeof line, COND_MS), "accept_leaker did not start");
    cr_assert_eq(sscanf(line, "port %d", &l.port), 1, "%s", line);
    l.leaked = 0;
    /* The sampler starts with the listener: points before the leak exist once
     * one round has passed. */
    struct series_look s = {.l = &l};
    cr_assert(h_wait_for(series_has_points, &s, COND_MS), "no series point before the leak");
    leak(&l, 3);
    cr_assert(h_wait_for(series_reaches, &s, COND_MS), "series ends at %d in CLOSE_WAIT, want 3",
              s.last_close_wait);
    cr_assert_eq(s.first_close_wait, 0, "the series must start before the leak");
    leaker_stop(&l);
}

/*
 * metrics_serve.c - `closewatch metrics`: looks at the chosen processes
 * (PIDs, or every live process with a ring) and hands the metrics of that
 * look (report_metrics.c) to Prometheus: printed once, written to a
 * textfile for node_exporter's textfile collector (atomically, every
 * interval), or served over HTTP to a direct scrape, a fresh look per
 * scrape.
 */
#include "metrics_serve.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "kernel.h"
#include "report.h"
#include "view_build.h"

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* The pids to look at: the ones given, or every live owner of a ring. */
static int chosen_pids(const struct cw_metrics_opts *o, int **out)
{
    if (!o->all) {
        *out = malloc((size_t)(o->npids ? o->npids : 1) * sizeof **out);
        if (*out)
            memcpy(*out, o->pids, (size_t)o->npids * sizeof **out);
        return *out ? o->npids : 0;
    }
    char **paths;
    int n = cw_find_rings(o->dir, 0, &paths), k = 0;
    *out = malloc((size_t)(n ? n : 1) * sizeof **out);
    for (int i = 0; *out && i < n; i++) {
        const char *base = strrchr(paths[i], '/');
        int pid = cw_ring_file_pid(base ? base + 1 : paths[i]);
        int seen = 0;
        for (int j = 0; j < k && !seen; j++)
            seen = (*out)[j] == pid;
        if (pid > 0 && !seen && cw_pid_alive(pid, NULL))
            (*out)[k++] = pid;
    }
    cw_free_paths(paths, n);
    return *out ? k : 0;
}

/* One look at the processes, as metrics text in a malloc'd buffer. */
static char *look(const struct cw_metrics_opts *o, size_t *len)
{
    struct cw_analysis a;
    cw_analysis_init(&a, &o->opt);
    int *pids, n = chosen_pids(o, &pids);
    for (int i = 0; i < n; i++) {
        char err[512];
        /* A process that exited since is simply gone from the metrics. */
        if (cw_analyze_pid(&a, pids[i], o->dir, err, sizeof err) && !o->all && o->npids)
            fprintf(stderr, "closewatch: metrics: %s\n", err);
    }
    free(pids);
    cw_analysis_link_inherited(&a);
    struct cw_symbolizer *sym = cw_symbolizer_new();
    struct cw_view *v = cw_view_build(&a, sym, NULL);
    char *buf = NULL;
    FILE *m = open_memstream(&buf, len);
    if (m) {
        cw_report_metrics(m, v, o->top);
        fclose(m);
    }
    cw_view_free(v);
    cw_symbolizer_free(sym);
    cw_analysis_free(&a);
    return buf;
}

static int write_textfile(const char *path, const char *text, size_t len)
{
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
    FILE *f = fopen(tmp, "we");
    if (!f) {
        fprintf(stderr, "closewatch: metrics: %s: %s\n", tmp, strerror(errno));
        return -1;
    }
    int ok = fwrite(text, 1, len, f) == len;
    ok = (fclose(f) == 0) && ok;
    /* The collector must never read half a file: rename is atomic. */
    if (!ok || rename(tmp, path) != 0) {
        fprintf(stderr, "closewatch: metrics: %s: %s\n", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int listen_on(const char *addr, char *err, size_t errlen)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (!colon || !colon[1]) {
        snprintf(err, errlen, "--listen: expected ADDR:PORT (e.g. 127.0.0.1:9464), got '%s'", addr);
        return -1;
    }
    size_t hl = (size_t)(colon - addr);
    if (hl >= 2 && addr[0] == '[' && addr[hl - 1] == ']')
        snprintf(host, sizeof host, "%.*s", (int)hl - 2, addr + 1);
    else
        snprintf(host, sizeof host, "%.*s", (int)hl, addr);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
    int rc = getaddrinfo(*host ? host : NULL, colon + 1, &hints, &res);
    if (rc) {
        snprintf(err, errlen, "--listen %s: %s", addr, gai_strerror(rc));
        return -1;
    }
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd >= 0)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 16)) {
        snprintf(err, errlen, "--listen %s: %s", addr, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* Reads the request head (bounded in size and time); 0 if none came. */
static int read_request(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (n + 1 < cap && poll(&p, 1, 5000) == 1) {
        ssize_t r = read(fd, buf + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
        buf[n] = 0;
        if (strstr(buf, "\r\n\r\n") || strstr(buf, "\n\n"))
            return 1;
    }
    return 0;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void answer(int fd, const struct cw_metrics_opts *o)
{
    char req[8192];
    if (!read_request(fd, req, sizeof req))
        return;
    char head[512];
    if (strncmp(req, "GET /metrics ", 13) && strncmp(req, "GET / ", 6)) {
        static const char nf[] = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
                                 "Content-Length: 28\r\nConnection: close\r\n\r\n"
                                 "closewatch serves /metrics\r\n";
        write_all(fd, nf, sizeof nf - 1);
        return;
    }
    size_t len = 0;
    char *body = look(o, &len);
    /* Prometheus asks for OpenMetrics first; anything else gets the text
     * format, which reads the same lines ("# EOF" is a comment there). */
    const char *type = strstr(req, "application/openmetrics-text")
                           ? "application/openmetrics-text; version=1.0.0; charset=utf-8"
                           : "text/plain; version=0.0.4; charset=utf-8";
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                      "Connection: close\r\n\r\n",
                      type, body ? len : 0);
    write_all(fd, head, (size_t)hl);
    if (body)
        write_all(fd, body, len);
    free(body);
}

int cw_metrics_run(const struct cw_metrics_opts *o)
{
    struct sigaction sa = {.sa_handler = on_stop};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (!o->listen) {
        for (int i = 0; !stop_requested && (!o->count || i < o->count); i++) {
            size_t len = 0;
            char *text = look(o, &len);
            int rc = !text         ? -1
                     : o->textfile ? write_textfile(o->textfile, text, len)
                                   : (fwrite(text, 1, len, stdout) == len ? 0 : -1);
            free(text);
            fflush(stdout);
            if (rc)
                return 2;
            if (!o->textfile || (o->count && i + 1 == o->count))
                break;
            struct timespec ts = {(time_t)o->interval,
                                  (long)((o->interval - (time_t)o->interval) * 1e9)};
            nanosleep(&ts, NULL);
        }
        return 0;
    }
    char err[512];
    int lfd = listen_on(o->listen, err, sizeof err);
    if (lfd < 0) {
        fprintf(stderr, "closewatch: metrics: %s\n", err);
        return 2;
    }
    fprintf(stderr, "closewatch: metrics on http://%s/metrics\n", o->listen);
    for (int served = 0; !stop_requested && (!o->count || served < o->count);) {
        struct pollfd p = {.fd = lfd, .events = POLLIN};
        if (poll(&p, 1, 1000) != 1)
            continue;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        answer(fd, o);
        close(fd);
        served++;
    }
    close(lfd);
    return 0;
}

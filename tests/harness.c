/*
 * harness.c - shared test helpers (see harness.h).
 */
#include "harness.h"

#include "../analyzer/kernel.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

const char *h_build(void)
{
    const char *b = getenv("CW_BUILD");
    return b && *b ? b : "build";
}

const char *h_path(const char *rel)
{
    static char bufs[8][1024];
    static int next;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", h_build(), rel);
    return b;
}

char *h_mkdtemp(const char *tag)
{
    char *d = malloc(256);
    snprintf(d, 256, "/tmp/cwtest-%s-XXXXXX", tag);
    cr_assert_not_null(mkdtemp(d), "mkdtemp: %s", strerror(errno));
    return d;
}

void h_rmdir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

uint64_t h_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

struct h_proc h_spawn(char *const argv[], char *const env[], int preload, const char *ring_dir,
                      int capture)
{
    int pipefd[2] = {-1, -1};
    if (capture)
        cr_assert_eq(pipe2(pipefd, O_CLOEXEC), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
    if (pid == 0) {
        if (capture)
            dup2(pipefd[1], 1);
        for (int i = 0; env && env[i]; i++)
            putenv(env[i]);
        if (preload) {
            char lib[1024];
            snprintf(lib, sizeof lib, "%s/libclosewatch.so", h_build());
            setenv("LD_PRELOAD", lib, 1);
            if (ring_dir)
                setenv("CLOSEWATCH_DIR", ring_dir, 1);
        } else {
            unsetenv("LD_PRELOAD");
        }
        execvp(argv[0], argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    if (capture)
        close(pipefd[1]);
    return (struct h_proc){.pid = pid, .out_fd = capture ? pipefd[0] : -1};
}

struct h_piped h_spawn_piped(char *const argv[], const char *ring_dir, const char *const unset[],
                             int pipe_err)
{
    int in[2], out[2], err[2] = {-1, -1};
    cr_assert_eq(pipe2(in, O_CLOEXEC), 0);
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    if (pipe_err)
        cr_assert_eq(pipe2(err, O_CLOEXEC), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1, "fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        if (pipe_err)
            dup2(err[1], 2);
        if (ring_dir) {
            setenv("LD_PRELOAD", h_path("libclosewatch.so"), 1);
            setenv("CLOSEWATCH_DIR", ring_dir, 1);
        } else {
            unsetenv("LD_PRELOAD");
        }
        for (int i = 0; unset && unset[i]; i++)
            unsetenv(unset[i]);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    if (pipe_err)
        close(err[1]);
    return (struct h_piped){.p = {.pid = pid, .out_fd = out[0]}, .in_fd = in[1], .err_fd = err[0]};
}

int h_wait(struct h_proc *p, int timeout_ms)
{
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    int status;
    for (;;) {
        pid_t r = waitpid(p->pid, &status, WNOHANG);
        if (r == p->pid)
            break;
        if (h_now_ms() > end) {
            kill(p->pid, SIGKILL);
            waitpid(p->pid, &status, 0);
            status = -1;
            break;
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    if (p->out_fd >= 0)
        close(p->out_fd);
    p->out_fd = -1;
    return status;
}

int h_read_line(struct h_proc *p, char *buf, size_t len, int timeout_ms)
{
    size_t n = 0;
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    while (n + 1 < len) {
        struct pollfd pfd = {.fd = p->out_fd, .events = POLLIN};
        int left = (int)(end - h_now_ms());
        if (left <= 0 || poll(&pfd, 1, left) <= 0)
            return 0;
        char c;
        if (read(p->out_fd, &c, 1) != 1)
            return 0;
        if (c == '\n')
            break;
        buf[n++] = c;
    }
    buf[n] = 0;
    return 1;
}

int h_wait_for(int (*cond)(void *), void *arg, int timeout_ms)
{
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    while (!cond(arg)) {
        if (h_now_ms() > end)
            return 0;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(a, b);
}

int h_rings(const char *dir, pid_t pid, char paths[][512], int max)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int n = 0;
    struct dirent *e;
    char prefix[64];
    snprintf(prefix, sizeof prefix, "closewatch.%d.", (int)pid);
    while ((e = readdir(d)) && n < max) {
        if (strncmp(e->d_name, pid ? prefix : "closewatch.", strlen(pid ? prefix : "closewatch.")))
            continue;
        snprintf(paths[n++], 512, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    qsort(paths, (size_t)n, 512, cmp_str);
    return n;
}

void h_open_ring(struct cw_ring *r, const char *dir, pid_t pid)
{
    char paths[8][512];
    int n = h_rings(dir, pid, paths, 8);
    cr_assert_geq(n, 1, "no ring file for pid %d in %s", (int)pid, dir);
    char err[512];
    int rc = cw_ring_open(r, paths[0], err, sizeof err);
    cr_assert_eq(rc, CW_RING_OK, "%s", err);
}

int h_listen(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(fd, 128), 0);
    socklen_t l = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &l);
    *port = ntohs(a.sin_port);
    return fd;
}

ssize_t h_read_deadline(int fd, void *buf, size_t n, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, ms), 1, "no data within %d ms", ms);
    ssize_t r = read(fd, buf, n);
    cr_assert_geq(r, 0, "read: %s", strerror(errno));
    return r;
}

void h_echo_session(int port, int wait_close)
{
    int fd = h_connect(port);
    static const char msg[] = "hello closewatch\n";
    cr_assert_eq(write(fd, msg, sizeof msg - 1), (ssize_t)(sizeof msg - 1));
    char buf[64];
    size_t got = 0;
    while (got < sizeof msg - 1) {
        ssize_t r = h_read_deadline(fd, buf + got, sizeof buf - got, 20000);
        cr_assert_gt(r, 0, "the server closed before echoing");
        got += (size_t)r;
    }
    cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    if (wait_close)
        cr_assert_eq(h_read_deadline(fd, buf, sizeof buf, 20000), 0,
                     "the server did not close its side after our FIN");
    close(fd);
}

int h_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0, "connect: %s", strerror(errno));
    return fd;
}

char *h_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0, got;
    char *b = malloc(cap);
    while (b && (got = fread(b + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb)
                free(b);
            b = nb;
        }
    }
    fclose(f);
    if (b)
        b[n] = 0;
    if (len)
        *len = n;
    return b;
}

int h_kernel_close_wait(int pid)
{
    struct cw_kview kv;
    char err[256];
    if (cw_kernel_view(pid, &kv, err, sizeof err) != 0)
        return 0;
    int n = 0;
    for (int i = 0; i < kv.n; i++)
        n += kv.socks[i].is_tcp && kv.socks[i].state == CW_TCP_CLOSE_WAIT;
    cw_kview_free(&kv);
    return n;
}

void h_ctl_open(struct h_ctl *c)
{
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0, "pipe2: %s", strerror(errno));
    cr_assert_eq(fcntl(p[0], F_SETFD, 0), 0);
    c->rd = p[0];
    c->wr = p[1];
    snprintf(c->arg, sizeof c->arg, "%d", p[0]);
}

void h_ctl_spawned(struct h_ctl *c)
{
    close(c->rd);
    c->rd = -1;
}

void h_ctl_release(struct h_ctl *c)
{
    if (c->wr >= 0)
        close(c->wr);
    c->wr = -1;
}

int h_closewatch(const char *dir, char *const args[], char **out)
{
    char path[600];
    static int seq;
    snprintf(path, sizeof path, "%s/closewatch.%d.%d.out", dir, (int)getpid(), seq++);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0)
            _exit(126);
        char *argv[32] = {(char *)h_path("closewatch")};
        for (int i = 0; args[i] && i < 30; i++)
            argv[i + 1] = args[i];
        execv(argv[0], argv);
        _exit(127);
    }
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    *out = h_slurp(path, NULL);
    unlink(path);
    cr_assert_not_null(*out, "no output from closewatch");
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int h_marker_line(const char *path, const char *marker)
{
    char *text = h_slurp(path, NULL);
    cr_assert_not_null(text, "cannot read %s", path);
    const char *at = strstr(text, marker);
    cr_assert_not_null(at, "%s has no %s", path, marker);
    int line = 1;
    for (const char *c = text; c < at; c++)
        line += *c == '\n';
    free(text);
    return line;
}

const char *h_pyenv_python(const char *minor)
{
    static char path[1024];
    const char *root = getenv("PYENV_ROOT"), *home = getenv("HOME");
    char dir[512];
    if (root && *root)
        snprintf(dir, sizeof dir, "%s/versions", root);
    else if (home)
        snprintf(dir, sizeof dir, "%s/.pyenv/versions", home);
    else
        return NULL;
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = strlen(minor);
    const char *found = NULL;
    while (d && !found && (e = readdir(d)))
        if (!strncmp(e->d_name, minor, n) && e->d_name[n] == '.') {
            snprintf(path, sizeof path, "%s/%s/bin/python%s", dir, e->d_name, minor);
            if (access(path, X_OK) == 0)
                found = path;
        }
    if (d)
        closedir(d);
    return found;
}

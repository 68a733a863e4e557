/*
 * bench_ka.c - the keep-alive request/response workload of scripts/bench:
 * a few long connections, each carrying many small requests.
 *
 *   bench_ka server PORTFILE CONNS      epoll server on 127.0.0.1: accepts CONNS connections,
 *                                        answers every 64-byte request with a 64-byte response,
 *                                        exits once all of them have closed, printing the CPU
 *                                        time it used (all threads) in microseconds per request.
 *                                        Writes its port to PORTFILE when it is listening.
 *   bench_ka client PORT CONNS REQUESTS  closed loop over CONNS connections, one request in
 *                                        flight on each; prints requests per second.
 *   bench_ka wait PORT SECONDS           exits 0 as soon as PORT accepts a connection (used to
 *                                        wait for nginx), 1 after SECONDS.
 *
 * The server is the program under test (plain, preloaded, strace, valgrind). Per request it
 * makes the calls a real event-loop server makes: epoll_wait() and read(), which closewatch
 * passes through (a comparison on the result), and write(), which it does not hook.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_cpu.h"

#define MSG       64
#define MAX_CONNS 256

static void die(const char *what)
{
    fprintf(stderr, "bench_ka: %s: %s\n", what, strerror(errno));
    exit(2);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Writes the port through a rename, so the script never reads half a number. */
static void publish_port(const char *path, int port)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
        die("port file");
}

static int listen_any_port(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 4096) ||
        getsockname(fd, (struct sockaddr *)&sa, &len))
        die("listen");
    *port = ntohs(sa.sin_port);
    return fd;
}

static int write_all(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        n -= (size_t)w;
    }
    return 0;
}

static int server(const char *portfile, int conns)
{
    int port;
    int lfd = listen_any_port(&port);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev))
        die("epoll");
    publish_port(portfile, port);

    /* Bytes of a partial request, per fd: loopback rarely splits a 64-byte write, but may. */
    static size_t pending[65536];
    static const char response[MSG] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    char buf[4096];
    int accepted = 0, open = 0;
    long answered = 0;
    while (accepted < conns || open > 0) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (c < 0 || c >= 65536)
                    die("accept");
                nodelay(c);
                pending[c] = 0;
                struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev))
                    die("epoll_ctl");
                accepted++;
                open++;
                continue;
            }
            ssize_t r = read(fd, buf, sizeof buf);
            if (r < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (r <= 0) {
                close(fd);
                open--;
                continue;
            }
            pending[fd] += (size_t)r;
            for (; pending[fd] >= MSG; pending[fd] -= MSG, answered++)
                if (write_all(fd, response, MSG))
                    die("write");
        }
    }
    printf("%.3f\n", answered ? bench_cpu_us() / (double)answered : 0.0);
    return 0;
}

struct conn {
    int fd;
    size_t got; /* bytes of the current response */
};

static int client(int port, int nconns, long requests)
{
    if (nconns < 1 || nconns > MAX_CONNS)
        nconns = 4;
    static struct conn c[MAX_CONNS];
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < nconns; i++) {
        c[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c[i].fd < 0 || connect(c[i].fd, (struct sockaddr *)&sa, sizeof sa))
            die("connect");
        nodelay(c[i].fd);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev))
            die("epoll_ctl");
    }
    static const char request[MSG] = "GET / HTTP/1.1\r\nHost: bench\r\n\r\n";
    char buf[4096];
    long sent = 0, done = 0;
    double t0 = now_s();
    for (int i = 0; i < nconns && sent < requests; i++, sent++)
        if (write_all(c[i].fd, request, MSG))
            die("write");
    while (done < requests) {
        struct epoll_event evs[MAX_CONNS];
        int n = epoll_wait(ep, evs, MAX_CONNS, 10000);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "bench_ka: server stopped answering (%ld/%ld)\n", done, requests);
            return 2;
        }
        for (int k = 0; k < n; k++) {
            struct conn *cn = &c[evs[k].data.u32];
            ssize_t r = read(cn->fd, buf, sizeof buf);
            if (r <= 0)
                die("read");
            for (cn->got += (size_t)r; cn->got >= MSG; cn->got -= MSG) {
                done++;
                if (sent < requests) {
                    sent++;
                    if (write_all(cn->fd, request, MSG))
                        die("write");
                }
            }
        }
    }
    double dt = now_s() - t0;
    for (int i = 0; i < nconns; i++)
        close(c[i].fd);
    printf("%.0f\n", (double)requests / dt);
    return 0;
}

static int wait_port(int port, double seconds)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    double end = now_s() + seconds;
    while (now_s() < end) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
        if (fd >= 0)
            close(fd);
        if (ok)
            return 0;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 1;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "server"))
        return server(argv[2], atoi(argv[3]));
    if (argc == 5 && !strcmp(argv[1], "client"))
        return client(atoi(argv[2]), atoi(argv[3]), atol(argv[4]));
    if (argc == 4 && !strcmp(argv[1], "wait"))
        return wait_port(atoi(argv[2]), atof(argv[3]));
    fprintf(stderr, "usage: bench_ka server PORTFILE CONNS | client PORT CONNS REQUESTS | "
                    "wait PORT SECONDS\n");
    return 2;
}

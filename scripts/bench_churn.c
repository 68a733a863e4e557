/*
 * bench_churn.c - the connection-churn workload of scripts/bench: a new TCP
 * connection per request.
 *
 *   bench_churn server PORTFILE CONNS       serves CONNS connections one after the other, each:
 *                                           accept(), read() the 64-byte request, write() the
 *                                           response, read() until EOF, close(). Writes its port to
 *                                           PORTFILE when listening; exits when done, printing the
 *                                           CPU time it used (all threads) in microseconds per
 *                                           connection.
 *   bench_churn tserver PORTFILE CONNS      the same with a new detached thread per connection
 *                                           (the shape of the seeds' C and Java servers, of
 *                                           Python's ThreadingTCPServer): a thread's first
 *                                           recorded events are the ones every connection pays.
 *   bench_churn client PORT CONNS THREADS   THREADS threads share CONNS connections, each:
 *                                           connect, request, response, close. Prints
 *                                           connections per second.
 *
 * The server is the program under test: every connection is a full socket life as closewatch
 * sees it (open via accept with a backtrace, the peer's FIN seen by read()==0 with a backtrace,
 * close with a backtrace), so this is the cost of lifecycle recording.
 *
 * The client closes first, so TIME_WAIT lands on its side (about 60 s per connection; a run
 * of the benchmark keeps some tens of thousands). That matters to closewatch: its sampler asks
 * sock_diag for the CLOSE_WAIT sockets every second and the kernel walks all of the host's TCP
 * sockets to answer, TIME_WAIT ones included. Connections are spread over source addresses
 * 127.0.0.2-127.0.0.201, so ephemeral ports never run out.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_cpu.h"

#define MSG     64
#define SOURCES 200

static void die(const char *what)
{
    fprintf(stderr, "bench_churn: %s: %s\n", what, strerror(errno));
    exit(2);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void publish_port(const char *path, int port)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
        die("port file");
}

/* Reads exactly n bytes; returns 0 on success, 1 on EOF first. */
static int read_full(int fd, char *buf, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, buf, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            die("read");
        if (r == 0)
            return 1;
        buf += r;
        n -= (size_t)r;
    }
    return 0;
}

static void write_full(int fd, const char *buf, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("write");
        buf += w;
        n -= (size_t)w;
    }
}

static const char request[MSG] = "GET / HTTP/1.0\r\nHost: bench\r\n\r\n";
static const char response[MSG] = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";

/* One function per step, so the recorded backtraces look like a real server's. */
static __attribute__((noinline)) void handle(int fd)
{
    char buf[MSG];
    if (read_full(fd, buf, MSG) == 0) {
        write_full(fd, response, MSG);
        /* Wait for the client's FIN: the read()==0 closewatch records as EOF. */
        while (read(fd, buf, sizeof buf) > 0)
            ;
    }
    close(fd);
}

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static long done_count;

static void *handle_thread(void *arg)
{
    handle((int)(intptr_t)arg);
    pthread_mutex_lock(&done_lock);
    done_count++;
    pthread_cond_signal(&done_cond);
    pthread_mutex_unlock(&done_lock);
    return NULL;
}

static int server(const char *portfile, long conns, int threaded)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 4096) ||
        getsockname(lfd, (struct sockaddr *)&sa, &len))
        die("listen");
    publish_port(portfile, ntohs(sa.sin_port));
    for (long i = 0; i < conns; i++) {
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        int fd = accept(lfd, (struct sockaddr *)&peer, &plen);
        if (fd < 0 && errno == EINTR) {
            i--;
            continue;
        }
        if (fd < 0)
            die("accept");
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (!threaded) {
            handle(fd);
            continue;
        }
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        errno = pthread_create(&t, &attr, handle_thread, (void *)(intptr_t)fd);
        pthread_attr_destroy(&attr);
        if (errno)
            die("pthread_create");
    }
    /* Every handler done (their CPU time is in getrusage only once they ran). */
    pthread_mutex_lock(&done_lock);
    while (threaded && done_count < conns)
        pthread_cond_wait(&done_cond, &done_lock);
    pthread_mutex_unlock(&done_lock);
    close(lfd);
    printf("%.3f\n", conns > 0 ? bench_cpu_us() / (double)conns : 0.0);
    return 0;
}

static int g_port;
static _Atomic long g_left;

static void *client_thread(void *arg)
{
    unsigned src = (unsigned)(uintptr_t)arg;
    char buf[MSG];
    while (atomic_fetch_sub(&g_left, 1) > 0) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            die("socket");
        int one = 1;
        /* Pick the port at connect(), per 4-tuple, not at bind(). */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct sockaddr_in me = {.sin_family = AF_INET,
                                 .sin_addr.s_addr = htonl(0x7f000002u + src++ % SOURCES)};
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_port = htons((uint16_t)g_port),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (bind(fd, (struct sockaddr *)&me, sizeof me) ||
            connect(fd, (struct sockaddr *)&sa, sizeof sa))
            die("connect");
        write_full(fd, request, MSG);
        if (read_full(fd, buf, MSG))
            die("short response");
        close(fd);
    }
    return NULL;
}

static int client(int port, long conns, int threads)
{
    if (threads < 1 || threads > 64)
        threads = 2;
    g_port = port;
    atomic_store(&g_left, conns);
    pthread_t t[64];
    double t0 = now_s();
    for (int i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, client_thread, (void *)(uintptr_t)(i * 7919u)))
            die("pthread_create");
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    printf("%.0f\n", (double)conns / (now_s() - t0));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && !strcmp(argv[1], "server"))
        return server(argv[2], atol(argv[3]), 0);
    if (argc == 4 && !strcmp(argv[1], "tserver"))
        return server(argv[2], atol(argv[3]), 1);
    if (argc == 5 && !strcmp(argv[1], "client"))
        return client(atoi(argv[2]), atol(argv[3]), atoi(argv[4]));
    fprintf(stderr,
            "usage: bench_churn server|tserver PORTFILE CONNS | client PORT CONNS THREADS\n");
    return 2;
}

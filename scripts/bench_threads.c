/*
 * bench_threads.c - many threads opening and closing sockets at once, for
 * scripts/bench: what closewatch's shared state (ring index, socket ids,
 * counters, stack table) costs under contention.
 *
 *   bench_threads THREADS ITERATIONS socket       each thread: socket() + close(), ITERATIONS times
 *   bench_threads THREADS ITERATIONS socketpair   each thread: socketpair() + close() x2
 *
 * All threads start together (barrier). Prints socket lives per second over all threads.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long g_iters;
static int g_pair;
static pthread_barrier_t g_start;

static void die(const char *what)
{
    fprintf(stderr, "bench_threads: %s: %s\n", what, strerror(errno));
    exit(2);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *worker(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&g_start);
    for (long i = 0; i < g_iters; i++) {
        if (g_pair) {
            int sv[2];
            if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
                die("socketpair");
            close(sv[0]);
            close(sv[1]);
        } else {
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (fd < 0)
                die("socket");
            close(fd);
        }
    }
    pthread_barrier_wait(&g_start);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[3], "socket") && strcmp(argv[3], "socketpair"))) {
        fprintf(stderr, "usage: bench_threads THREADS ITERATIONS socket|socketpair\n");
        return 2;
    }
    int threads = atoi(argv[1]);
    if (threads < 1 || threads > 256)
        threads = 8;
    g_iters = atol(argv[2]);
    g_pair = !strcmp(argv[3], "socketpair");
    pthread_barrier_init(&g_start, NULL, (unsigned)threads + 1);
    pthread_t t[256];
    for (int i = 0; i < threads; i++)
        if (pthread_create(&t[i], NULL, worker, NULL))
            die("pthread_create");
    pthread_barrier_wait(&g_start);
    double t0 = now_s();
    pthread_barrier_wait(&g_start);
    double dt = now_s() - t0;
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    long lives = (long)threads * g_iters * (g_pair ? 2 : 1);
    printf("%.0f\n", (double)lives / dt);
    return 0;
}

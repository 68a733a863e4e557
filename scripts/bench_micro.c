/*
 * bench_micro.c - per-call microbenchmarks for scripts/bench: what one
 * intercepted call costs with and without libclosewatch.so.
 *
 *   bench_micro all SCALE     wall clock: prints "CASE NS_PER_CALL" for every case below, each
 *                             the median of 11 batches, cases interleaved batch by batch
 *                             (SCALE multiplies the batch sizes)
 *   bench_micro count N       N calls of every case, warmed up first, nothing printed: run under
 *                             valgrind --tool=callgrind --toggle-collect=count_* to get the
 *                             instructions of each case (the hook included) per call; the
 *                             warm-up goes through identical functions named warm_*, so symbol
 *                             binding and first-time stack interning are not counted
 *   bench_micro paired N      the read() hook alone: N batches alternating the interposed read()
 *                             and libc's own read() (found with dlopen RTLD_NOLOAD) on one pipe
 *                             in one process; prints the median per-batch difference in ns per
 *                             call. Process-wide effects (other threads, memory layout) cancel;
 *                             without a preload both are libc's read and the difference is ~0.
 *
 *   case        what is timed / counted
 *   read_sock   read(16 bytes) on an AF_UNIX stream socket that has data (the pass-through hook)
 *   read_pipe   the same on a pipe (a non-socket fd takes the same hook path)
 *   sockclose   socket(AF_INET, SOCK_STREAM) + close(): two recorded events, two backtraces
 *   accept      accept() of a pending loopback connection: recorded (event, backtrace, fstat,
 *               getsockname/getpeername)
 *   close       close() of that accepted socket: recorded
 *   getpid      syscall(SYS_getpid): no hook, the floor of a system call (all only; under the
 *               bpf recorder every call on the machine pays its sys_enter/sys_exit programs)
 *
 * Refills (write) and the connecting side (socket, connect) are outside the timed region and
 * outside the counted functions. The connecting socket is reset (SO_LINGER 0) so thousands of
 * iterations leave no TIME_WAIT behind to exhaust ephemeral ports.
 */
#include <dlfcn.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE    16
#define REFILL_READS 1024 /* a refill is 16 KiB: below every default socket and pipe buffer */
#define BATCHES      11

static void die(const char *what)
{
    fprintf(stderr, "bench_micro: %s: %s\n", what, strerror(errno));
    exit(2);
}

static inline long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/*
 * The measured operations, each instantiated twice: count_* (what callgrind counts, by name:
 * noinline, noclone keep the names) and warm_* (the warm-up, identical code).
 */
static inline void read_loop(int fd, char *buf, int n)
{
    for (int i = 0; i < n; i++)
        if (read(fd, buf, READ_SIZE) != READ_SIZE)
            die("read");
}

static inline void sockclose_loop(int n)
{
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            die("socket");
        close(fd);
    }
}

static inline int accept_op(int lfd)
{
    struct sockaddr_in peer; /* asked for, as servers do */
    socklen_t len = sizeof peer;
    return accept(lfd, (struct sockaddr *)&peer, &len);
}

#define NOINL __attribute__((noinline, noclone))
static NOINL void count_read_sock(int fd, char *buf, int n)
{
    read_loop(fd, buf, n);
}
static NOINL void count_read_pipe(int fd, char *buf, int n)
{
    read_loop(fd, buf, n);
}
static NOINL void count_sockclose(int n)
{
    sockclose_loop(n);
}
static NOINL int count_accept(int lfd)
{
    return accept_op(lfd);
}
static NOINL int count_close(int fd)
{
    return close(fd);
}
static NOINL void warm_read(int fd, char *buf, int n)
{
    read_loop(fd, buf, n);
}
static NOINL void warm_sockclose(int n)
{
    sockclose_loop(n);
}
static NOINL int warm_accept(int lfd)
{
    return accept_op(lfd);
}
static NOINL int warm_close(int fd)
{
    return close(fd);
}

typedef void read_fn(int, char *, int);

static void refill(int wfd, const char *chunk)
{
    if (write(wfd, chunk, READ_SIZE * REFILL_READS) != READ_SIZE * REFILL_READS)
        die("refill");
}

/* ns per read over `reads` reads through fn, refilling between timed batches. */
static double time_reads(read_fn *fn, int rfd, int wfd, long reads, int timed)
{
    static char chunk[READ_SIZE * REFILL_READS];
    char buf[READ_SIZE];
    long long spent = 0;
    for (long done = 0; done < reads; done += REFILL_READS) {
        refill(wfd, chunk);
        long long t0 = timed ? now_ns() : 0;
        fn(rfd, buf, REFILL_READS);
        if (timed)
            spent += now_ns() - t0;
    }
    return (double)spent / (double)reads;
}

static double time_sockclose(void (*fn)(int), long n)
{
    long long t0 = now_ns();
    fn((int)n);
    return (double)(now_ns() - t0) / (double)n;
}

static int listener(struct sockaddr_in *sa)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    socklen_t len = sizeof *sa;
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)sa, sizeof *sa) || listen(lfd, 128) ||
        getsockname(lfd, (struct sockaddr *)sa, &len))
        die("listen");
    return lfd;
}

/* Times accept() and close() of the accepted socket; n iterations. */
static void time_accept(int (*acc_fn)(int), int (*close_fn)(int), int lfd,
                        const struct sockaddr_in *sa, long n, double *acc_ns, double *close_ns)
{
    long long acc = 0, cls = 0;
    for (long i = 0; i < n; i++) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct linger lg = {1, 0};
        if (c < 0 || setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) ||
            connect(c, (const struct sockaddr *)sa, sizeof *sa))
            die("connect");
        long long t0 = now_ns();
        int fd = acc_fn(lfd);
        long long t1 = now_ns();
        if (fd < 0)
            die("accept");
        close(c); /* reset: no TIME_WAIT */
        long long t2 = now_ns();
        close_fn(fd);
        long long t3 = now_ns();
        acc += t1 - t0;
        cls += t3 - t2;
    }
    *acc_ns = (double)acc / (double)n;
    *close_ns = (double)cls / (double)n;
}

static double time_getpid(long n)
{
    long long t0 = now_ns();
    for (long i = 0; i < n; i++)
        syscall(SYS_getpid);
    return (double)(now_ns() - t0) / (double)n;
}

static void all(double scale)
{
    int sv[2], pp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) || pipe(pp))
        die("socketpair/pipe");
    struct sockaddr_in sa;
    int lfd = listener(&sa);
    long reads = (long)(scale * 50 * REFILL_READS), socks = (long)(scale * 3000);
    long accepts = (long)(scale * 600);
    if (reads < REFILL_READS)
        reads = REFILL_READS;
    if (socks < 10)
        socks = 10;
    if (accepts < 10)
        accepts = 10;

    /* Warm-up: first calls resolve symbols, fault in pages and intern the stacks. */
    time_reads(count_read_sock, sv[0], sv[1], REFILL_READS, 0);
    time_reads(count_read_pipe, pp[0], pp[1], REFILL_READS, 0);
    time_sockclose(count_sockclose, 100);
    double a, c;
    time_accept(count_accept, count_close, lfd, &sa, 50, &a, &c);

    time_getpid(reads);

    double rs[BATCHES], rp[BATCHES], sc[BATCHES], ac[BATCHES], cl[BATCHES], gp[BATCHES];
    /* Cases interleaved batch by batch, so a noisy second hits all of them alike. */
    for (int b = 0; b < BATCHES; b++) {
        rs[b] = time_reads(count_read_sock, sv[0], sv[1], reads, 1);
        rp[b] = time_reads(count_read_pipe, pp[0], pp[1], reads, 1);
        sc[b] = time_sockclose(count_sockclose, socks);
        time_accept(count_accept, count_close, lfd, &sa, accepts, &ac[b], &cl[b]);
        gp[b] = time_getpid(reads);
    }
    printf("read_sock %.1f\nread_pipe %.1f\nsockclose %.1f\naccept %.1f\nclose %.1f\ngetpid %.1f\n",
           median(rs, BATCHES), median(rp, BATCHES), median(sc, BATCHES), median(ac, BATCHES),
           median(cl, BATCHES), median(gp, BATCHES));
}

static void count(long n)
{
    int sv[2], pp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) || pipe(pp))
        die("socketpair/pipe");
    struct sockaddr_in sa;
    int lfd = listener(&sa);
    double a, c;
    time_reads(warm_read, sv[0], sv[1], REFILL_READS, 0);
    time_reads(warm_read, pp[0], pp[1], REFILL_READS, 0);
    time_sockclose(warm_sockclose, 10);
    time_accept(warm_accept, warm_close, lfd, &sa, 10, &a, &c);

    long reads = (n + REFILL_READS - 1) / REFILL_READS * REFILL_READS;
    time_reads(count_read_sock, sv[0], sv[1], reads, 0);
    time_reads(count_read_pipe, pp[0], pp[1], reads, 0);
    time_sockclose(count_sockclose, n);
    time_accept(count_accept, count_close, lfd, &sa, n, &a, &c);
    printf("reads %ld\nothers %ld\n", reads, n);
}

typedef ssize_t read_t(int, void *, size_t);

static NOINL void paired_loop(read_t *f, int fd, char *buf, int n)
{
    for (int i = 0; i < n; i++)
        if (f(fd, buf, READ_SIZE) != READ_SIZE)
            die("read");
}

static void paired(int batches)
{
    void *libc = dlopen("libc.so.6", RTLD_NOLOAD | RTLD_NOW);
    read_t *libc_read = libc ? (read_t *)dlsym(libc, "read") : NULL;
    read_t *hooked = (read_t *)dlsym(RTLD_DEFAULT, "read");
    int pp[2];
    if (!libc_read || !hooked || pipe(pp))
        die("dlsym/pipe");
    static char chunk[READ_SIZE * REFILL_READS];
    char buf[READ_SIZE];
    enum { HALF = REFILL_READS / 2 };
    if (batches < 11)
        batches = 11;
    double *d = malloc((size_t)batches * sizeof *d);
    if (!d)
        die("malloc");
    for (int b = -10; b < batches; b++) { /* 10 batches of warm-up */
        refill(pp[1], chunk);
        /* Alternate which goes first, so position in the batch cancels too. */
        read_t *first = b % 2 ? hooked : libc_read, *second = b % 2 ? libc_read : hooked;
        long long t0 = now_ns();
        paired_loop(first, pp[0], buf, HALF);
        long long t1 = now_ns();
        paired_loop(second, pp[0], buf, HALF);
        long long t2 = now_ns();
        double hook = (double)(first == hooked ? t1 - t0 : t2 - t1);
        double base = (double)(first == hooked ? t2 - t1 : t1 - t0);
        if (b >= 0)
            d[b] = (hook - base) / HALF;
    }
    printf("%.2f\n", median(d, batches));
    free(d);
}

int main(int argc, char **argv)
{
    if (argc != 3)
        goto usage;
    if (!strcmp(argv[1], "all"))
        all(atof(argv[2]));
    else if (!strcmp(argv[1], "count"))
        count(atol(argv[2]));
    else if (!strcmp(argv[1], "paired"))
        paired(atoi(argv[2]));
    else
        goto usage;
    return 0;
usage:
    fprintf(stderr, "usage: bench_micro all SCALE | count N | paired BATCHES\n");
    return 2;
}

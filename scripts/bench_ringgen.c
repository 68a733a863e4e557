/*
 * bench_ringgen.c - writes the ring scripts/bench's analyzer figure reads:
 * about EVENTS events with 10,000 sockets open at exit. Run it under
 * libclosewatch.so with CLOSEWATCH_RING_MB=64 (2^20 slots of 64 bytes, so
 * nothing is overwritten) and CLOSEWATCH_SAMPLE_MS=0 (a fixed event count).
 *
 *   bench_ringgen EVENTS
 *
 * Sockets held open at exit (10,000), so the analyzer rebuilds lives of every kind:
 *   8,000  socket(AF_INET, SOCK_STREAM), never used
 *   1,000  AF_UNIX socketpair ends whose peer was closed and whose EOF was read (read()==0)
 *   1,000  accepted loopback TCP connections whose client closed: real CLOSE_WAIT sockets,
 *          half of them with the EOF read
 *   plus the listener.
 * Then socket()+close() churn from 16 call stacks of different depths fills the ring up to
 * EVENTS: the bulk the analyzer has to read, order and pair up.
 *
 * The event count is bookkeeping here (one per open, close, connect, EOF); closewatch's exit
 * snapshot adds a state event per CLOSE_WAIT socket. Prints the count it produced.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HELD_PLAIN 8000
#define HELD_EOF   1000
#define HELD_TCP   1000
#define SITES      16

static long events;

static void die(const char *what)
{
    fprintf(stderr, "bench_ringgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static __attribute__((noinline)) void hold_plain(void)
{
    for (int i = 0; i < HELD_PLAIN; i++, events++)
        if (socket(AF_INET, SOCK_STREAM, 0) < 0)
            die("socket (raise ulimit -n)");
}

static __attribute__((noinline)) void hold_eof(void)
{
    char c;
    for (int i = 0; i < HELD_EOF; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
            die("socketpair");
        close(sv[1]);
        if (read(sv[0], &c, 1) != 0)
            die("expected EOF");
        events += 4; /* open x2, close, EOF */
    }
}

static __attribute__((noinline)) void hold_close_wait(void)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) || listen(lfd, 128) ||
        getsockname(lfd, (struct sockaddr *)&sa, &len))
        die("listen");
    events++;
    char c;
    for (int i = 0; i < HELD_TCP; i++) {
        int cfd = socket(AF_INET, SOCK_STREAM, 0);
        if (cfd < 0 || connect(cfd, (struct sockaddr *)&sa, sizeof sa))
            die("connect");
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        int fd = accept(lfd, (struct sockaddr *)&peer, &plen);
        if (fd < 0)
            die("accept");
        close(cfd);  /* the peer's FIN: fd is now in CLOSE_WAIT */
        events += 4; /* open, connect, open (accept), close */
        if (i % 2 == 0) {
            if (read(fd, &c, 1) != 0)
                die("expected EOF");
            events++;
        }
    }
}

/* Recurses `depth` frames before churning, so each site has its own stack. */
static __attribute__((noinline)) void churn(int depth, long pairs)
{
    if (depth > 0) {
        churn(depth - 1, pairs);
        __asm__ volatile("" ::: "memory"); /* no tail call: keep the frame */
        return;
    }
    for (long i = 0; i < pairs; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            die("socket");
        close(fd);
    }
}

int main(int argc, char **argv)
{
    long target = argc == 2 ? atol(argv[1]) : 1000000;
    hold_plain();
    hold_eof();
    hold_close_wait();
    long pairs = (target - events) / 2;
    for (int s = 0; s < SITES; s++) {
        long n = pairs / SITES + (s < pairs % SITES);
        churn(s, n);
        events += 2 * n;
    }
    printf("%ld\n", events);
    return 0;
}

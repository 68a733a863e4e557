/*
 * bench_hold.c - a program holding many open sockets, for scripts/bench's
 * memory figure: the peak RSS closewatch adds at N open sockets.
 *
 *   bench_hold N HOLD_MS    opens N TCP sockets with socket() (one fd each: connected pairs
 *                           would need two), keeps them open HOLD_MS milliseconds (so
 *                           closewatch's sampler process samples them), then prints the
 *                           VmHWM, in KiB, of this process and of its sampler (0 if none).
 *
 * Run it with and without LD_PRELOAD; the difference in the first figure is closewatch's memory
 * in the program at N sockets: fd table entries, ring events and stacks in the shared file
 * (touched pages only), libunwind. The sampler is a process of its own (it maps the same
 * file): the second figure.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench_cpu.h"

static void die(const char *what)
{
    fprintf(stderr, "bench_hold: %s: %s\n", what, strerror(errno));
    exit(2);
}

static long status_kib(int pid, const char *field)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    char line[256];
    size_t n = strlen(field);
    long v = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':')
            v = atol(line + n + 1);
    if (f)
        fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: bench_hold N HOLD_MS\n");
        return 2;
    }
    long n = atol(argv[1]), ms = atol(argv[2]);
    for (long i = 0; i < n; i++)
        if (socket(AF_INET, SOCK_STREAM, 0) < 0)
            die("socket (raise ulimit -n)");
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    /* Ours, and closewatch's sampler's (a process of its own): 0 if none. */
    int sampler = bench_sampler_pid();
    printf("%ld %ld\n", status_kib(getpid(), "VmHWM"), sampler ? status_kib(sampler, "VmHWM") : 0);
    return 0;
}

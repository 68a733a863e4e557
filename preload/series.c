/*
 * series.c - the count series in the ring (shm_layout.h): after each of
 * its rounds the sampler notes how many of the program's tracked sockets
 * are open and how many sit in CLOSE_WAIT, so a report can draw the counts
 * over the whole life of the process (the event ring overwrites its oldest
 * events; this stays a few KiB however long the program runs).
 *
 * Only the sampler process writes it, so there is no writer race; readers
 * see series_gen odd while a point is added or the series halved, and
 * retry.
 */
#include "cw.h"

/* The rounds not yet written: their most open and most in CLOSE_WAIT, so a
 * peak between two points is not lost. */
static struct {
    uint32_t rounds;
    struct cw_series_point p;
} pending;

void cw_series_sample(void)
{
    struct cw_header *h = cw.hdr;
    if (!h || !h->series_cap || !h->series_stride)
        return;
    uint32_t open = atomic_load((_Atomic uint32_t *)&h->sockets_open), close_wait = 0;
    int hwm = cw_fd_hwm();
    for (int fd = 0; fd < hwm; fd++) {
        const struct cw_fd_entry *e = cw_fd(fd);
        close_wait += (atomic_load((_Atomic uint64_t *)&e->sid) & CW_SID_OPEN) &&
                      e->tcp_state == CW_TCP_CLOSE_WAIT;
    }
    pending.p.mono_ns = cw_now();
    if (open > pending.p.open)
        pending.p.open = open;
    if (close_wait > pending.p.close_wait)
        pending.p.close_wait = close_wait;
    if (++pending.rounds < h->series_stride)
        return;

    struct cw_series_point *pts = (struct cw_series_point *)((uint8_t *)h + h->series_off);
    uint32_t n = h->series_n;
    __atomic_store_n(&h->series_gen, h->series_gen + 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    if (n >= h->series_cap) {
        /* Full: each pair becomes one point (the later time, the larger
         * counts), and a point now stands for twice the rounds. */
        for (uint32_t i = 0; i < n / 2; i++) {
            struct cw_series_point a = pts[2 * i], b = pts[2 * i + 1];
            pts[i] = (struct cw_series_point){
                .mono_ns = b.mono_ns,
                .open = a.open > b.open ? a.open : b.open,
                .close_wait = a.close_wait > b.close_wait ? a.close_wait : b.close_wait};
        }
        n /= 2;
        h->series_stride *= 2;
    }
    pts[n++] = pending.p;
    h->series_n = n;
    __atomic_store_n(&h->series_gen, h->series_gen + 1, __ATOMIC_RELEASE);
    pending.rounds = 0;
    pending.p = (struct cw_series_point){0};
}

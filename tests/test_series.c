/*
 * test_series.c - the ring's count series (shm_layout.h, preload/series.c):
 * a real leaking server under the preload with its sampler looking every
 * millisecond, long enough to fill the series and make the sampler halve
 * it; the series must still span the whole life, keep its peak and never
 * count more sockets in CLOSE_WAIT than open.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "harness.h"

Test(series, spans_the_life_after_halving_and_keeps_the_peak, .timeout = 60)
{
    char *dir = h_mkdtemp("series");
    char fixture[1024];
    snprintf(fixture, sizeof fixture, "%s/fixtures/demo_server", h_build());
    char *argv[] = {fixture, "3", "5.0", NULL};
    char *env[] = {"CLOSEWATCH_SAMPLE_MS=1", NULL};
    struct h_proc p = h_spawn(argv, env, 1, dir, 0);
    int status = h_wait(&p, 30000);
    cr_assert(status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);

    struct cw_ring r;
    h_open_ring(&r, dir, p.pid);
    static struct cw_series_point pts[CW_SERIES_CAP];
    int n = cw_ring_series(&r, pts, CW_SERIES_CAP);
    /* 5 s of 1 ms rounds (stretched to at most ~50x a round's cost) is more
     * than 512: the series was halved at least once. */
    cr_assert_geq(r.hdr.series_stride, 2, "never halved: %d points, stride %u", n,
                  r.hdr.series_stride);
    cr_log_info("count series: %d points, stride %u", n, r.hdr.series_stride);
    cr_assert(n >= CW_SERIES_CAP / 2 && n <= CW_SERIES_CAP, "%d points", n);
    uint64_t start = r.hdr.start_mono_ns;
    /* A halving that lost the beginning would start ~2.5 s in; a sampler
     * delayed on a loaded machine has been seen starting 1.4 s in. */
    cr_assert_lt(pts[0].mono_ns - start, 2000000000ull, "first point %.3f s after start",
                 (double)(pts[0].mono_ns - start) / 1e9);
    cr_assert_geq(pts[n - 1].mono_ns - start, 4500000000ull, "last point %.3f s after start",
                  (double)(pts[n - 1].mono_ns - start) / 1e9);
    uint32_t peak = 0;
    for (int i = 0; i < n; i++) {
        if (i)
            cr_assert_gt(pts[i].mono_ns, pts[i - 1].mono_ns, "point %d goes back in time", i);
        cr_assert_leq(pts[i].close_wait, pts[i].open, "point %d", i);
        if (pts[i].close_wait > peak)
            peak = pts[i].close_wait;
    }
    cr_assert_eq(peak, 3);
    cr_assert_eq(pts[n - 1].close_wait, 3, "still 3 in CLOSE_WAIT at the end");
    cw_ring_close(&r);
    h_rmdir(dir);
    free(dir);
}

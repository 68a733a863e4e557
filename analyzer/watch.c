/*
 * watch.c - the `closewatch watch` loop (see watch.h): each look analyzes
 * the live processes with a grace of 0 (every socket in CLOSE_WAIT counts),
 * makes its view, lets the history take it in and prints it.
 */
#include "watch.h"

#include <stdio.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "kernel.h"
#include "report.h"
#include "view_build.h"
#include "xalloc.h"

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

int cw_watch_run(const struct cw_watch_opts *o)
{
    struct cw_watch w = {.window_s = o->window_s, .nprocs = o->npids};
    w.procs = cw_xcalloc((size_t)o->npids, sizeof *w.procs);
    for (int i = 0; i < o->npids; i++)
        w.procs[i] = (struct cw_watch_proc){.pid = o->pids[i], .alive = 1};
    struct cw_watch_screen screen = {.tty = isatty(1), .interval = o->interval};
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct cw_options opt = o->opt;
    opt.grace_s = 0;
    for (int look = 0; !o->count || look < o->count; look++) {
        struct cw_analysis a;
        cw_analysis_init(&a, &opt);
        int alive = 0;
        for (int i = 0; i < w.nprocs; i++) {
            struct cw_watch_proc *p = &w.procs[i];
            char err[512];
            if (!p->alive)
                continue;
            if (!cw_pid_alive(p->pid, NULL) ||
                cw_analyze_pid(&a, p->pid, o->dir, err, sizeof err)) {
                p->alive = 0;
                if (!screen.tty)
                    printf("pid %d exited\n", p->pid);
                continue;
            }
            alive++;
        }
        cw_analysis_link_inherited(&a);
        struct cw_symbolizer *sym = cw_symbolizer_new();
        struct cw_view *v = cw_view_build(&a, sym, NULL);
        cw_watch_update(&w, v, seconds_since(&t0));
        time_t now = time(NULL);
        char stamp[32];
        strftime(stamp, sizeof stamp, "%H:%M:%S", localtime(&now));
        screen.stamp = stamp;
        struct winsize ws;
        screen.rows = screen.tty && !ioctl(1, TIOCGWINSZ, &ws) && ws.ws_row ? ws.ws_row : 24;
        screen.cols = screen.tty && !ioctl(1, TIOCGWINSZ, &ws) && ws.ws_col ? ws.ws_col : 80;
        if (alive || screen.tty)
            cw_report_watch(stdout, v, &w, &screen);
        fflush(stdout);
        cw_view_free(v);
        cw_symbolizer_free(sym);
        cw_analysis_free(&a);
        if (!alive || (o->count && look + 1 == o->count) || (o->stop && *o->stop))
            break;
        struct timespec ts = {(time_t)o->interval,
                              (long)((o->interval - (time_t)o->interval) * 1e9)};
        nanosleep(&ts, NULL); /* a signal cuts it short: stop is looked at next */
        if (o->stop && *o->stop)
            break;
    }
    cw_watch_free(&w);
    return 0;
}

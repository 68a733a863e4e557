/*
 * watch.h - `closewatch watch PID...`: a look at the processes every
 * interval, until they exit (or --count looks), printed as report_watch.c
 * formats it.
 */
#ifndef CW_WATCH_H
#define CW_WATCH_H

#include "model.h"

#include <signal.h>

struct cw_watch_opts {
    struct cw_options opt;
    const char *dir; /* ring directory */
    const int *pids;
    int npids;
    double interval, window_s;
    int count; /* looks, 0: until every process exited */
    /* Non-zero (a signal arrived) ends the watch after the current look;
     * NULL: only the processes' ends and count do. */
    const volatile sig_atomic_t *stop;
};

/* Returns the exit status (0). */
int cw_watch_run(const struct cw_watch_opts *o);

#endif

/*
 * watch_history.h - what `closewatch watch` remembers between its looks at
 * a process: the counts over time (for the chart) and when each socket in
 * CLOSE_WAIT was first seen, so growth can be told and attributed: "CLOSE_WAIT
 * +37 in the last 60 s, 35 of them opened at server.c:49". Plain data made
 * from views (view.h), read by the watch renderer.
 */
#ifndef CW_WATCH_HISTORY_H
#define CW_WATCH_HISTORY_H

#include "view.h"

#define CW_WATCH_SAMPLES 120 /* chart width at most */

struct cw_watch_seen {
    uint64_t inode;
    double first_seen; /* seconds since the watch started */
};

/* Growth of CLOSE_WAIT found at the last look, if any. */
struct cw_watch_growth {
    int grew;         /* the count rose since the previous look */
    int delta;        /* CLOSE_WAIT now minus at the start of the window */
    double window_s;  /* the span that delta covers */
    int top_n;        /* of the sockets new in the window, how many share... */
    char opened[512]; /* ...this opening place ("" if none known) */
    char eof_at[512]; /* the EOF place most of those share ("" if none) */
};

struct cw_watch_proc {
    int pid;
    int alive;
    double t[CW_WATCH_SAMPLES]; /* oldest first */
    int close_wait[CW_WATCH_SAMPLES], open[CW_WATCH_SAMPLES];
    int n;
    struct cw_watch_seen *seen; /* CLOSE_WAIT sockets of the last look */
    int nseen;
    int new_since_last;                 /* of those, first seen at the last look */
    struct cw_watch_growth growth;      /* of the last look */
    struct cw_watch_growth last_growth; /* the latest look that grew */
    double last_growth_at;              /* when (0: never) */
};

struct cw_watch {
    double window_s;
    struct cw_watch_proc *procs;
    int nprocs;
};

/* Takes in one look (a view of the watched processes at `now`, seconds
 * since the watch started). */
void cw_watch_update(struct cw_watch *w, const struct cw_view *v, double now);
void cw_watch_free(struct cw_watch *w);

#endif

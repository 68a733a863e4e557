/*
 * metrics_serve.h - `closewatch metrics`: metrics of live processes for
 * Prometheus, printed, written to a textfile, or served over HTTP.
 */
#ifndef CW_METRICS_SERVE_H
#define CW_METRICS_SERVE_H

#include "model.h"

struct cw_metrics_opts {
    struct cw_options opt; /* the grace findings are judged by */
    const char *dir;       /* ring directory */
    const int *pids;
    int npids;
    int all;              /* every live process with a ring in dir */
    const char *listen;   /* ADDR:PORT to serve /metrics on, or NULL */
    const char *textfile; /* file to rewrite every interval, or NULL */
    double interval;      /* textfile: seconds between writes */
    int count;            /* stop after this many writes or scrapes (0: never) */
    int top;              /* opening locations shown per process */
};

/* Returns the exit status: 0, or 2 when the output cannot be written or
 * the address cannot be listened on (with a message). */
int cw_metrics_run(const struct cw_metrics_opts *o);

#endif

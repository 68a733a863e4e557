/*
 * report.h - the report formats. Each formats a resolved view (view.h) and
 * nothing else.
 */
#ifndef CW_REPORT_H
#define CW_REPORT_H

#include <stdio.h>

#include "view.h"
#include "watch_history.h"

void cw_report_text(FILE *out, const struct cw_view *v);
void cw_report_json(FILE *out, const struct cw_view *v);
void cw_report_markdown(FILE *out, const struct cw_view *v);
void cw_report_sarif(FILE *out, const struct cw_view *v);
/* JUnit XML: a test case per group of findings, failed for errors. */
void cw_report_junit(FILE *out, const struct cw_view *v);
/* Where and how `closewatch watch` prints a look. */
struct cw_watch_screen {
    int tty;           /* a terminal: redraw in place, with charts */
    int rows, cols;    /* its size */
    double interval;   /* seconds between looks */
    const char *stamp; /* the look's time of day */
};
/* One look of `closewatch watch` (w holds what earlier looks saw). */
void cw_report_watch(FILE *out, const struct cw_view *v, const struct cw_watch *w,
                     const struct cw_watch_screen *screen);

/* Prometheus/OpenMetrics text: sockets by state, findings by kind, fds and
 * their limit, the top `top` opening places of CLOSE_WAIT sockets. */
void cw_report_metrics(FILE *out, const struct cw_view *v, int top);
/* One self-contained HTML file (inline CSS, SVG, script; no fetches). */
void cw_report_html(FILE *out, const struct cw_view *v);

#endif

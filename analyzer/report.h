/*
 * report.h - the report formats. Each formats a resolved view (view.h) and
 * nothing else.
 */
#ifndef CW_REPORT_H
#define CW_REPORT_H

#include <stdio.h>

#include "view.h"

void cw_report_text(FILE *out, const struct cw_view *v);
void cw_report_json(FILE *out, const struct cw_view *v);
void cw_report_markdown(FILE *out, const struct cw_view *v);
void cw_report_sarif(FILE *out, const struct cw_view *v);
/* One self-contained HTML file (inline CSS, SVG, script; no fetches). */
void cw_report_html(FILE *out, const struct cw_view *v);
/* One look of `closewatch watch`: each live process's sockets by state and
 * its sockets in CLOSE_WAIT with where they were opened; stamp is the time. */
void cw_report_watch(FILE *out, const struct cw_view *v, const char *stamp);

#endif

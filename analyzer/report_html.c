/*
 * report_html.c - the report to attach to a ticket and open in a browser:
 * one self-contained file (inline CSS, SVG and a few lines of script; it
 * fetches nothing). Facts, the summary table, each process's kernel view,
 * a chart of each process's open and CLOSE_WAIT counts over its life
 * (the ring's count series), then one collapsible section per group of findings (worst first, the
 * first few open) with a timeline of its sockets' lives in SVG, its stacks
 * (frames in system libraries after the first folded away), its sockets
 * (the first few up front, the rest behind a click), the first socket's
 * events and what to do; the SUMMARY line last. Printing opens every
 * section. Everything from the traced program (paths, argv, symbols,
 * addresses) is escaped for HTML.
 */
#include <inttypes.h>
#include <string.h>
#include <sys/utsname.h>

#include "json.h"
#include "report.h"

#define GROUPS_OPEN   3   /* groups shown expanded; the rest collapsed */
#define SOCKETS_SHOWN 10  /* socket rows per group before "N more" */
#define LANES_MAX     200 /* sockets drawn per group timeline */
#define CHART_W       720 /* SVG user units */
#define LANES_H       160 /* height of a timeline's lanes at most */

/* ---- escaping -------------------------------------------------------------- */

/* Text and attribute values: the five HTML specials as entities, control
 * characters shown as \xNN (a raw one is invisible or breaks layout). */
static void h(FILE *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '&': fputs("&amp;", out); break;
        case '<': fputs("&lt;", out); break;
        case '>': fputs("&gt;", out); break;
        case '"': fputs("&quot;", out); break;
        case '\'': fputs("&#39;", out); break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                fprintf(out, "\\x%02x", *p);
            else
                fputc(*p, out);
        }
    }
}

/* ---- page frame ------------------------------------------------------------ */

static const char STYLE[] =
    "body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;padding:0 1em;"
    "color:#1b1f24}\n"
    "h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em}\n"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d0d7de;padding:2px 8px;"
    "text-align:left;vertical-align:top}th{background:#f6f8fa}td.n,th.n{text-align:right}\n"
    "code,.mono,ol.frames{font-family:ui-monospace,monospace;font-size:12.5px}\n"
    "details.group{border:1px solid #d0d7de;border-radius:6px;margin:.8em 0;padding:.2em .8em}\n"
    "details.group>summary{font-weight:600;cursor:pointer;padding:.3em 0}\n"
    "details.group.error>summary .kind{color:#b3261e}\n"
    ".at{background:#fff3cd;padding:0 4px;border-radius:3px}\n"
    "ol.frames{margin:.2em 0 .6em;padding-left:3.2em}ol.frames li.sys{color:#57606a}\n"
    "details.fold>summary{color:#57606a;cursor:pointer;font-style:italic}\n"
    "details.stack>summary{cursor:pointer}\n"
    ".muted{color:#57606a}.summary-line{font-family:ui-monospace,monospace;padding:.5em;"
    "background:#f6f8fa;border:1px solid #d0d7de}\n"
    "svg{max-width:100%;height:auto;display:block;margin:.4em 0}svg text{font:11px sans-serif;"
    "fill:#57606a}\n"
    ".key span{display:inline-block;width:12px;height:8px;margin:0 4px 0 12px}\n"
    "#tools{float:right}button{font:inherit}\n"
    "@media print{body{max-width:none;margin:0;font-size:11px}#tools{display:none}"
    "details.group{break-inside:avoid-page;border-color:#888}th{background:none}"
    ".at{background:none;text-decoration:underline}}\n";

/* Expand/collapse all, and open everything before printing (a closed
 * <details> prints as its summary only). */
static const char SCRIPT[] =
    "function cwAll(o){document.querySelectorAll('details').forEach(function(d){d.open=o;});}\n"
    "window.addEventListener('beforeprint',function(){cwAll(true);});\n";

static const char *program_of(const struct cw_vprocess *p)
{
    return p->cmdline[0] ? p->cmdline : p->exe;
}

/* ---- facts, summary, kernel view -------------------------------------------- */

static void fact(FILE *out, const char *name, const char *value)
{
    fprintf(out, "<tr><th>%s</th><td>", name);
    h(out, value);
    fputs("</td></tr>\n", out);
}

static void facts(FILE *out, const struct cw_view *v)
{
    char buf[320];
    fputs("<table class=facts>\n", out);
    if (v->nprocs == 1) {
        const struct cw_vprocess *p = &v->procs[0];
        fact(out, "program", program_of(p));
        if (p->cmdline[0] && p->exe[0])
            fact(out, "executable", p->exe);
        snprintf(buf, sizeof buf, "%d (parent %d)", p->pid, p->ppid);
        fact(out, "pid", buf);
        fact(out, "started", p->started ? p->started : "unknown");
        snprintf(buf, sizeof buf, "%.1f s", p->duration_s);
        fact(out, "duration", buf);
        fact(out, "state", p->state);
    } else {
        snprintf(buf, sizeof buf, "%d (below)", v->nprocs);
        fact(out, "processes", buf);
    }
    struct utsname u;
    if (uname(&u) == 0) {
        snprintf(buf, sizeof buf, "%s %s %s", u.sysname, u.release, u.machine);
        fact(out, "kernel", buf);
    }
    fact(out, "closewatch", CW_VERSION);
    snprintf(buf, sizeof buf, "%.1f s", v->grace_s);
    fact(out, "grace", buf);
    fact(out, "report generated", v->generated_at);
    fputs("</table>\n", out);
}

static void process_table(FILE *out, const struct cw_view *v)
{
    if (v->nprocs < 2)
        return;
    fputs("<h2>Processes</h2>\n<table class=procs><tr><th class=n>pid</th><th>program</th>"
          "<th>started</th><th class=n>duration</th><th>state</th><th class=n>sockets seen</th>"
          "</tr>\n",
          out);
    for (int i = 0; i < v->nprocs; i++) {
        const struct cw_vprocess *p = &v->procs[i];
        fprintf(out, "<tr><td class=n>%d</td><td class=mono>", p->pid);
        h(out, program_of(p));
        fprintf(out, "</td><td>%s</td><td class=n>%.1f s</td><td>%s</td><td class=n>%d</td></tr>\n",
                p->started ? p->started : "unknown", p->duration_s, p->state, p->sockets_seen);
    }
    fputs("</table>\n", out);
}

static void summary_table(FILE *out, const struct cw_view *v)
{
    fputs("<h2>Summary</h2>\n<table id=summary><tr><th>kind</th><th class=n>count</th></tr>\n",
          out);
    for (int k = 0; k < CW_K_COUNT; k++)
        fprintf(out, "<tr data-kind=\"%s\"><td>%s</td><td class=n>%d</td></tr>\n",
                cw_kind_name((enum cw_kind)k), cw_kind_name((enum cw_kind)k), v->counts[k]);
    fprintf(out, "<tr data-kind=suppressed><td>suppressed</td><td class=n>%d</td></tr>\n</table>\n",
            v->suppressed);
}

/* A live process's sockets as the kernel showed them. */
static void kernel_views(FILE *out, const struct cw_view *v)
{
    int any = 0;
    for (int i = 0; i < v->nprocs; i++)
        any |= v->procs[i].has_kernel_view;
    if (!any)
        return;
    fputs("<h2>Kernel view</h2>\n<table id=kernel><tr><th class=n>pid</th><th class=n>sockets</th>"
          "<th>TCP states</th><th class=n>non-TCP</th></tr>\n",
          out);
    for (int i = 0; i < v->nprocs; i++) {
        const struct cw_vprocess *p = &v->procs[i];
        if (!p->has_kernel_view)
            continue;
        fprintf(out, "<tr><td class=n>%d</td><td class=n>%d</td><td>", p->pid, p->kernel_sockets);
        for (int s = 0; s < p->ntcp_states; s++)
            fprintf(out, "%s%s %d", s ? ", " : "", p->tcp_states[s].name, p->tcp_states[s].n);
        fprintf(out, "</td><td class=n>%d</td></tr>\n", p->non_tcp);
    }
    fputs("</table>\n", out);
}

/* ---- the timeline of a group's sockets ---------------------------------------- */

/* A tick step of 1, 2 or 5 times a power of ten giving about five ticks. */
static double tick_step(double span)
{
    double step = 1e-3;
    while (span / step > 6) {
        double next[] = {step * 2, step * 5, step * 10};
        for (int i = 0; i < 3 && span / step > 6; i++)
            step = next[i];
    }
    return step;
}

static void axis(FILE *out, double span, int x0, int w, int y)
{
    double step = tick_step(span);
    fprintf(out, "<line x1=%d y1=%d x2=%d y2=%d stroke=\"#999\"/>\n", x0, y, x0 + w, y);
    for (double t = 0; t <= span + step / 1000; t += step) {
        double x = x0 + t / span * w;
        fprintf(out,
                "<line x1=%.1f y1=%d x2=%.1f y2=%d stroke=\"#999\"/>"
                "<text x=%.1f y=%d text-anchor=middle>%g s</text>\n",
                x, y, x, y + 4, x, y + 16, t);
    }
}

/* The socket drawn in lane i of lanes: all of them, or when there are more
 * than LANES_MAX an even sample, so the picture spans the whole pile-up. */
static const struct cw_vfinding *lane(const struct cw_vgroup *g, int i, int lanes)
{
    return &g->first[(long)i * g->n / lanes];
}

/* One lane per socket: established (blue) from open to the peer's FIN,
 * CLOSE_WAIT (red) from the FIN to close() or the end of the process, a
 * black tick where it was closed. Times are seconds since each socket's
 * process started. */
static void lives_chart(FILE *out, const struct cw_vgroup *g)
{
    double span = 0;
    int lanes = g->n < LANES_MAX ? g->n : LANES_MAX, drawn = 0;
    for (int i = 0; i < lanes; i++)
        if (lane(g, i, lanes)->proc->duration_s > span)
            span = lane(g, i, lanes)->proc->duration_s;
    for (int i = 0; i < lanes; i++) {
        const struct cw_vfinding *f = lane(g, i, lanes);
        double ts[] = {f->open_t, f->eof_t, f->close_t};
        for (int k = 0; k < 3; k++)
            if (ts[k] > span)
                span = ts[k];
        drawn += f->open_t >= 0;
    }
    if (!drawn || span <= 0)
        return;
    const int x0 = 40, w = CHART_W - x0 - 10;
    double lane_h = (double)LANES_H / lanes;
    if (lane_h > 12)
        lane_h = 12;
    int top = 6, height = (int)(lane_h * lanes + 0.5);
    fprintf(out,
            "<svg class=lives viewBox=\"0 0 %d %d\" role=img aria-label=\"socket lives\">\n"
            "<title>Socket lives: established, then CLOSE_WAIT after the peer's FIN</title>\n",
            CHART_W, top + height + 24);
    double bar = lane_h > 2 ? lane_h * 0.7 : lane_h;
    for (int i = 0; i < lanes; i++) {
        const struct cw_vfinding *f = lane(g, i, lanes);
        if (f->open_t < 0)
            continue;
        double end = f->close_t >= 0 ? f->close_t : f->proc->duration_s;
        double fin = f->eof_t >= 0 && f->eof_t < end ? f->eof_t : end;
        if (fin < f->open_t)
            fin = f->open_t;
        double y = top + i * lane_h;
        double xo = x0 + f->open_t / span * w, xf = x0 + fin / span * w, xe = x0 + end / span * w;
        fprintf(out, "<g class=life data-fd=%d><title>fd %d (pid %d): opened %.3f s, ", f->fd,
                f->fd, f->proc->pid, f->open_t);
        if (f->eof_t >= 0)
            fprintf(out, "peer FIN %.3f s, ", f->eof_t);
        if (f->close_t >= 0)
            fprintf(out, "closed %.3f s", f->close_t);
        else
            fputs("never closed", out);
        fprintf(out,
                "</title><rect x=%.1f y=%.1f width=%.1f height=%.2f fill=\"#6e9bd1\"/>"
                "<rect class=cw x=%.1f y=%.1f width=%.1f height=%.2f fill=\"#d1495b\"/>",
                xo, y, xf - xo, bar, xf, y, xe - xf, bar);
        if (f->close_t >= 0)
            fprintf(out, "<rect x=%.1f y=%.1f width=1.5 height=%.2f fill=\"#000\"/>", xe, y, bar);
        fputs("</g>\n", out);
    }
    axis(out, span, x0, w, top + height + 2);
    fputs("</svg>\n", out);
    fputs("<div class=\"key muted\"><span style=\"background:#6e9bd1\"></span>open"
          "<span style=\"background:#d1495b\"></span>CLOSE_WAIT (after the peer's FIN)"
          "<span style=\"background:#000;width:2px\"></span>closed",
          out);
    if (g->n > lanes)
        fprintf(out, " &middot; %d of the %d sockets drawn, evenly sampled", lanes, g->n);
    fputs("</div>\n", out);
}

/* ---- the counts over a process's life ------------------------------------------- */

/* A stepped line through one count of the series (open or close_wait). */
static void series_line(FILE *out, const struct cw_vprocess *p, int close_wait, double span,
                        int ymax, int x0, int w, int top, int hgt, const char *colour)
{
    fprintf(out, "<polyline class=%s fill=none stroke=\"%s\" stroke-width=1.5 points=\"",
            close_wait ? "cw" : "open", colour);
    double prev_y = -1;
    for (int i = 0; i < p->nseries; i++) {
        int n = close_wait ? p->series[i].close_wait : p->series[i].open;
        double x = x0 + p->series[i].t / span * w, y = top + hgt - (double)n / ymax * hgt;
        if (prev_y >= 0)
            fprintf(out, "%.1f,%.1f ", x, prev_y);
        fprintf(out, "%.1f,%.1f ", x, y);
        prev_y = y;
    }
    fputs("\"/>\n", out);
}

/* Open sockets and sockets in CLOSE_WAIT as the sampler counted them. */
static void series_chart(FILE *out, const struct cw_vprocess *p)
{
    if (p->nseries < 2)
        return;
    double span = p->duration_s;
    int ymax = 1, peak_cw = 0;
    for (int i = 0; i < p->nseries; i++) {
        if (p->series[i].t > span)
            span = p->series[i].t;
        if (p->series[i].open > ymax)
            ymax = p->series[i].open;
        if (p->series[i].close_wait > ymax)
            ymax = p->series[i].close_wait;
        if (p->series[i].close_wait > peak_cw)
            peak_cw = p->series[i].close_wait;
    }
    if (span <= 0)
        return;
    const int x0 = 40, w = CHART_W - x0 - 10, top = 8, hgt = 120;
    fprintf(out,
            "<figure class=series data-pid=%d data-points=%d data-peak-close-wait=%d>\n"
            "<svg viewBox=\"0 0 %d %d\" role=img aria-label=\"sockets over time\">\n"
            "<title>Process %d: tracked sockets open and in CLOSE_WAIT over its life</title>\n",
            p->pid, p->nseries, peak_cw, CHART_W, top + hgt + 24, p->pid);
    fprintf(out,
            "<line x1=%d y1=%d x2=%d y2=%d stroke=\"#999\"/><text x=%d y=%d "
            "text-anchor=end>%d</text><text x=%d y=%d text-anchor=end>0</text>\n",
            x0, top, x0, top + hgt, x0 - 4, top + 9, ymax, x0 - 4, top + hgt);
    series_line(out, p, 0, span, ymax, x0, w, top, hgt, "#6e9bd1");
    series_line(out, p, 1, span, ymax, x0, w, top, hgt, "#d1495b");
    axis(out, span, x0, w, top + hgt + 2);
    fprintf(out,
            "</svg>\n<figcaption class=\"key muted\">Process %d: "
            "<span style=\"background:#6e9bd1\"></span>tracked sockets open"
            "<span style=\"background:#d1495b\"></span>in CLOSE_WAIT (at most %d), "
            "%d samples</figcaption>\n</figure>\n",
            p->pid, peak_cw, p->nseries);
}

static void series_charts(FILE *out, const struct cw_view *v)
{
    int any = 0;
    for (int i = 0; i < v->nprocs; i++)
        any |= v->procs[i].nseries >= 2;
    if (!any)
        return;
    fputs("<h2>Sockets over time</h2>\n", out);
    for (int i = 0; i < v->nprocs; i++)
        series_chart(out, &v->procs[i]);
}

/* ---- stacks ------------------------------------------------------------------ */

static void frame(FILE *out, int i, const struct cw_vframe *f)
{
    fprintf(out, "<li value=%d%s>", i, f->system ? " class=sys" : "");
    h(out, f->function ? f->function : "??");
    if (f->file) {
        fputs(" <span class=src>", out);
        h(out, f->file);
        if (f->line) /* a Java native method has a file, no line */
            fprintf(out, ":%d", f->line);
        fputs("</span>", out);
    } else if (f->module) {
        fputs(" (", out);
        h(out, f->module);
        fputc(')', out);
    }
    fprintf(out, " <span class=muted>%s%s</span></li>\n", f->address_text,
            f->inlined ? " inlined" : "");
}

/* The frames, with each run of system-library frames after the first frame
 * folded into one line that opens on a click. */
static void frames(FILE *out, const struct cw_vstack *s)
{
    fputs("<ol class=frames>\n", out);
    for (int i = 0; i < s->n;) {
        int j = i;
        while (i > 0 && j < s->n && s->frames[j].system)
            j++;
        if (j > i) {
            fprintf(out,
                    "<li class=fold value=%d><details class=fold><summary>%d frame%s in system "
                    "libraries</summary><ol class=frames>\n",
                    i, j - i, j - i == 1 ? "" : "s");
            for (; i < j; i++)
                frame(out, i, &s->frames[i]);
            fputs("</ol></details></li>\n", out);
        } else {
            frame(out, i, &s->frames[i]);
            i++;
        }
    }
    fputs("</ol>\n", out);
}

static void where(FILE *out, const struct cw_vframe *at)
{
    if (!at)
        return;
    if (at->file) {
        fprintf(out, "<code class=at data-line=%d>", at->line);
        h(out, at->file);
        fprintf(out, ":%d</code>", at->line);
    } else {
        fputs("<code class=at>", out);
        h(out, at->module ? at->module : "??");
        fputs("</code>", out);
    }
    if (at->function) {
        fputs(" in <code>", out);
        h(out, at->function);
        fputs("</code>", out);
    }
}

static void stack(FILE *out, const struct cw_vstack *s, const char *label, const char *role)
{
    if (!s->n)
        return;
    fprintf(out, "<details class=stack data-stack=%s open><summary>%s ", role, label);
    where(out, s->at);
    fputs("</summary>\n", out);
    frames(out, s);
    fputs("</details>\n", out);
}

static void no_backtrace_note(FILE *out, const struct cw_vfinding *f)
{
    const struct cw_vprocess *p = f->proc;
    if (f->inherited)
        fprintf(out,
                "<p>Inherited from the parent process (pid %d): see its report for where it was "
                "opened.</p>\n",
                p->ppid);
    else if (f->kind->kind == CW_K_UNTRACKED || !p->has_ring)
        fprintf(out, "<p>No backtrace: %s.</p>\n",
                p->has_ring ? "the socket was created behind libc's back"
                            : "this process did not run under libclosewatch.so");
}

static void group_stacks(FILE *out, const struct cw_vfinding *f)
{
    if (f->kind->kind == CW_K_DOUBLE_CLOSE) {
        stack(out, &f->close, "Second close() at", "close");
        return;
    }
    if (f->kind->kind == CW_K_EMFILE) {
        fprintf(out, "<p>Failed with %s while %u tracked sockets were open.</p>\n", f->errno_name,
                f->sockets_open);
        stack(out, &f->open, "At", "open");
        return;
    }
    char label[120];
    if (f->opener)
        snprintf(label, sizeof label, "Opened (%s) by pid %d and inherited, at", f->origin,
                 f->opener->pid);
    else
        snprintf(label, sizeof label, "Opened (%s) at", f->origin);
    if (f->open.n)
        stack(out, &f->open, label, "open");
    else
        no_backtrace_note(out, f);
    stack(out, &f->eof_stack,
          f->eof_by_read ? "EOF (a read returned 0) seen at" : "EOF (poll/epoll HUP) seen at",
          "eof");
    stack(out, &f->close,
          f->closed_at_exit ? "Closed only at exit, by the process's teardown, at" : "Closed at",
          "close");
}

/* ---- sockets ------------------------------------------------------------------- */

static void socket_row(FILE *out, const struct cw_vfinding *f)
{
    fprintf(out, "<tr class=sock><td class=n>%d</td><td class=n>%d</td><td class=mono>",
            f->proc->pid, f->fd);
    h(out, f->local[0] ? f->local : "-");
    fputs("</td><td class=mono>", out);
    h(out, f->peer[0] ? f->peer : "-");
    fputs("</td><td class=n>", out);
    if (f->seconds_in_close_wait > 0)
        fprintf(out, "%.1f", f->seconds_in_close_wait);
    else
        fputs("-", out);
    fprintf(out, "%s</td><td>%s</td><td class=n>%u</td></tr>\n",
            f->closed_at_exit ? ", closed only at exit" : "", f->tcp_state, f->recv_q);
}

static void socket_table_head(FILE *out)
{
    fputs("<table class=sockets><tr><th class=n>pid</th><th class=n>fd</th><th>local</th>"
          "<th>peer</th><th class=n>s in CLOSE_WAIT</th><th>state</th><th class=n>recv-q</th>"
          "</tr>\n",
          out);
}

static void socket_tables(FILE *out, const struct cw_vgroup *g)
{
    socket_table_head(out);
    for (int i = 0; i < g->n && i < SOCKETS_SHOWN; i++)
        socket_row(out, &g->first[i]);
    fputs("</table>\n", out);
    if (g->n <= SOCKETS_SHOWN)
        return;
    fprintf(out, "<details class=more><summary>%d more sockets</summary>\n", g->n - SOCKETS_SHOWN);
    socket_table_head(out);
    for (int i = SOCKETS_SHOWN; i < g->n; i++)
        socket_row(out, &g->first[i]);
    fputs("</table></details>\n", out);
}

static void fd_list(FILE *out, const struct cw_vgroup *g)
{
    fputs("<p>File descriptors closed twice:", out);
    for (int i = 0; i < g->n && i < SOCKETS_SHOWN; i++)
        fprintf(out, "%s fd %d in pid %d", i ? "," : "", g->first[i].fd, g->first[i].proc->pid);
    if (g->n > SOCKETS_SHOWN)
        fprintf(out, " and %d more", g->n - SOCKETS_SHOWN);
    fputs(".</p>\n", out);
}

static void events(FILE *out, const struct cw_vfinding *f)
{
    if (!f->ntimeline)
        return;
    fputs("<details class=events><summary>Events of the first socket (seconds since the process "
          "started)</summary>\n<table><tr><th class=n>t (s)</th><th>event</th><th>detail</th>"
          "</tr>\n",
          out);
    for (int i = 0; i < f->ntimeline; i++) {
        fprintf(out, "<tr><td class=n>%.3f</td><td>%s</td><td>", f->timeline[i].t,
                f->timeline[i].event);
        h(out, f->timeline[i].detail);
        fputs("</td></tr>\n", out);
    }
    fputs("</table></details>\n", out);
}

static void group_section(FILE *out, const struct cw_vgroup *g, int number)
{
    const struct cw_vfinding *first = &g->first[0];
    enum cw_kind kind = g->kind->kind;
    fprintf(out, "<details class=\"group%s\" id=g%d data-kind=%s data-n=%d%s>\n<summary>",
            g->kind->is_error ? " error" : "", number, g->kind->name, g->n,
            number <= GROUPS_OPEN ? " open" : "");
    fprintf(out, "%d. <span class=kind>%s</span><span class=title>", number,
            g->kind->is_error ? "ERROR: " : "");
    h(out, g->title);
    fputs("</span>", out);
    if (first->placed && first->placed->at) {
        fputs(" &mdash; ", out);
        where(out, first->placed->at);
    }
    fputs("</summary>\n", out);
    fprintf(out, "<p>Kind <code>%s</code>, process %d: <code>", g->kind->name, first->proc->pid);
    h(out, program_of(first->proc));
    fputs("</code></p>\n", out);
    if (first->eof_sentence && (kind == CW_K_CLOSE_WAIT || kind == CW_K_LATE_CLOSE))
        fprintf(out, "<p>%s</p>\n", first->eof_sentence);
    if (kind != CW_K_DOUBLE_CLOSE && kind != CW_K_EMFILE)
        lives_chart(out, g);
    group_stacks(out, first);
    if (kind == CW_K_DOUBLE_CLOSE)
        fd_list(out, g);
    else if (kind != CW_K_EMFILE)
        socket_tables(out, g);
    events(out, first);
    fprintf(out, "<p><strong>What to do:</strong> %s</p>\n</details>\n", g->kind->advice);
}

/* ---- the end ------------------------------------------------------------------- */

static void suppressions(FILE *out, const struct cw_view *v)
{
    if (!v->nrules)
        return;
    fputs("<h2>Suppressions</h2>\n<p>File: <code>", out);
    h(out, v->suppressions_path);
    fputs("</code></p>\n<table><tr><th>rule</th><th class=n>hits</th></tr>\n", out);
    for (int i = 0; i < v->nrules; i++) {
        fputs("<tr><td class=mono>", out);
        h(out, v->rules[i].kind);
        fputc(':', out);
        h(out, v->rules[i].pattern);
        fprintf(out, "</td><td class=n>%d</td></tr>\n", v->rules[i].hits);
    }
    fputs("</table>\n", out);
}

static void warnings(FILE *out, const struct cw_view *v)
{
    if (!v->warnings || !v->warnings[0])
        return;
    fputs("<h2>Symbolizer warnings</h2>\n<ul>\n", out);
    for (char **w = v->warnings; *w; w++) {
        fputs("<li>", out);
        h(out, *w);
        fputs("</li>\n", out);
    }
    fputs("</ul>\n", out);
}

void cw_report_html(FILE *out, const struct cw_view *v)
{
    const char *name =
        v->nprocs == 1 ? (v->procs[0].exe[0] ? v->procs[0].exe : v->procs[0].cmdline) : NULL;
    fputs("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>\n"
          "<meta name=viewport content=\"width=device-width,initial-scale=1\">\n"
          "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; "
          "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n<title>",
          out);
    fputs("closewatch report", out);
    if (name) {
        fputs(": ", out);
        h(out, name);
    }
    fprintf(out, "</title>\n<style>\n%s</style>\n<script>\n%s</script>\n</head><body>\n", STYLE,
            SCRIPT);
    fputs("<div id=tools><button type=button onclick=\"cwAll(true)\">Expand all</button> "
          "<button type=button onclick=\"cwAll(false)\">Collapse all</button></div>\n",
          out);
    fputs("<h1>closewatch report", out);
    if (name) {
        fputs(": <code>", out);
        h(out, name);
        fputs("</code>", out);
    }
    fputs("</h1>\n", out);
    facts(out, v);
    process_table(out, v);
    summary_table(out, v);
    kernel_views(out, v);
    series_charts(out, v);
    if (!v->errors) {
        fprintf(out,
                "<p id=no-findings><strong>No findings:</strong> no socket stayed in CLOSE_WAIT "
                "longer than the grace of %.1f s, and nothing else was wrong",
                v->grace_s);
        if (v->suppressed)
            fprintf(out, " (%d finding%s suppressed)", v->suppressed,
                    v->suppressed == 1 ? " was" : "s were");
        fputs(".</p>\n", out);
    }
    if (v->ngroups)
        fprintf(out,
                "<h2>Findings</h2>\n<p class=muted>%d finding%s in %d group%s, worst first.</p>\n",
                v->nshown, v->nshown == 1 ? "" : "s", v->ngroups, v->ngroups == 1 ? "" : "s");
    for (int i = 0; i < v->ngroups; i++)
        group_section(out, &v->groups[i], i + 1);
    suppressions(out, v);
    warnings(out, v);
    fputs("<p class=summary-line id=summary-line>", out);
    h(out, v->summary);
    fputs("</p>\n</body></html>\n", out);
}

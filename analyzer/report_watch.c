/*
 * report_watch.c - what `closewatch watch` prints at each look. Piped: one
 * line of state counts per process and look, the CLOSE_WAIT sockets the
 * first time and then only the new ones, and a line whenever CLOSE_WAIT
 * grows, saying where the new sockets were opened. On a terminal: the
 * screen redrawn in place with the counts over time as sparklines, the last
 * growth and the newest CLOSE_WAIT sockets.
 */
#include <string.h>

#include "report.h"

static void counts_line(FILE *out, const struct cw_vprocess *p)
{
    fprintf(out, "pid %d: %d sockets:", p->pid, p->kernel_sockets);
    for (int s = 0; s < p->ntcp_states; s++)
        fprintf(out, " %s %d", p->tcp_states[s].name, p->tcp_states[s].n);
    fprintf(out, " non-TCP %d\n", p->non_tcp);
}

/* Prints line, cut at width columns when width > 0: on a terminal a line
 * that wraps would push the top of the screen out of view. */
static void fit(FILE *out, char *line, int width)
{
    if (width > 0 && strlen(line) >= (size_t)width)
        line[width - 1] = '\0';
    fprintf(out, "%s\n", line);
}

/* A source path as a screen has room for it: its last component. */
static const char *short_path(const char *path, int terse)
{
    const char *slash = terse ? strrchr(path, '/') : NULL;
    return slash ? slash + 1 : path;
}

/* One socket in CLOSE_WAIT: as it always was when piped; on a terminal
 * (width > 0) shorter, files by basename, so the opening line fits. */
static void socket_line(FILE *out, const struct cw_vfinding *f, int width)
{
    char line[1400];
    const struct cw_vframe *at = f->open.at;
    int n = width > 0 ? snprintf(line, sizeof line, "  fd %-5d %s <-> %s  %.1f s  eof %s", f->fd,
                                 f->local[0] ? f->local : "-", f->peer[0] ? f->peer : "-",
                                 f->seconds_in_close_wait, f->eof)
                      : snprintf(line, sizeof line,
                                 "  CLOSE_WAIT fd %d %s <-> %s %.1f s recv-q %u eof %s", f->fd,
                                 f->local[0] ? f->local : "-", f->peer[0] ? f->peer : "-",
                                 f->seconds_in_close_wait, f->recv_q, f->eof);
    if (at && at->function && n > 0 && (size_t)n < sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, width > 0 ? "  %s" : " opened in %s",
                      at->function);
    if (at && at->file && n > 0 && (size_t)n < sizeof line)
        snprintf(line + n, sizeof line - (size_t)n, " %s:%d", short_path(at->file, width > 0),
                 at->line);
    fit(out, line, width);
}

static void growth_line(FILE *out, const struct cw_watch_growth *g, int width)
{
    char line[1400];
    int n = snprintf(line, sizeof line, "CLOSE_WAIT %+d in the last %.0f s", g->delta, g->window_s);
    if (g->top_n && g->opened[0] && n > 0 && (size_t)n < sizeof line)
        n += snprintf(line + n, sizeof line - (size_t)n, ", %d of them opened at %s", g->top_n,
                      short_path(g->opened, width > 0));
    if (g->top_n && g->eof_at[0] && n > 0 && (size_t)n < sizeof line)
        snprintf(line + n, sizeof line - (size_t)n, " (eof observed at %s)",
                 short_path(g->eof_at, width > 0));
    fit(out, line, width);
}

static int is_close_wait(const struct cw_vfinding *f)
{
    return f->kind->kind == CW_K_CLOSE_WAIT || f->kind->kind == CW_K_UNTRACKED;
}

static double first_seen(const struct cw_watch_proc *p, const struct cw_vfinding *f)
{
    uint64_t key = f->inode ? f->inode : (1ull << 63) | (uint32_t)f->fd;
    for (int i = 0; i < p->nseen; i++)
        if (p->seen[i].inode == key)
            return p->seen[i].first_seen;
    return 0;
}

static const struct cw_vprocess *live_proc(const struct cw_view *v, int pid)
{
    const struct cw_vprocess *live = NULL;
    for (int i = 0; i < v->nprocs; i++)
        if (v->procs[i].pid == pid && v->procs[i].has_kernel_view)
            live = &v->procs[i];
    return live;
}

static void print_piped(FILE *out, const struct cw_view *v, const struct cw_watch *w,
                        const char *stamp)
{
    for (int i = 0; i < w->nprocs; i++) {
        const struct cw_watch_proc *wp = &w->procs[i];
        const struct cw_vprocess *p = live_proc(v, wp->pid);
        if (!p)
            continue;
        fprintf(out, "%s ", stamp);
        counts_line(out, p);
        double now = wp->n ? wp->t[wp->n - 1] : 0;
        for (int j = 0; j < v->nshown; j++) {
            const struct cw_vfinding *f = &v->findings[j];
            if (f->proc == p && is_close_wait(f) && (wp->n == 1 || first_seen(wp, f) == now))
                socket_line(out, f, 0);
        }
        if (wp->growth.grew && wp->growth.delta > 0) {
            fprintf(out, "%s pid %d: ", stamp, wp->pid);
            growth_line(out, &wp->growth, 0);
        }
    }
}

/* The series as one line of block characters, scaled to its maximum. */
static void sparkline(FILE *out, const int *v, int n, int width)
{
    static const char *const blocks[] = {"\u2581", "\u2582", "\u2583", "\u2584",
                                         "\u2585", "\u2586", "\u2587", "\u2588"};
    int from = n > width ? n - width : 0, max = 0;
    for (int i = from; i < n; i++)
        max = v[i] > max ? v[i] : max;
    for (int i = from; i < n; i++)
        fputs(max ? blocks[(v[i] * 7 + max / 2) / max] : blocks[0], out);
}

static void print_screen(FILE *out, const struct cw_view *v, const struct cw_watch *w,
                         const char *stamp, double interval, int rows, int cols)
{
    fputs("\033[H\033[2J", out); /* home, clear: redrawn in place */
    fprintf(out, "closewatch watch  %s  every %.1f s, growth over %.0f s  (Ctrl-C to stop)\n\n",
            stamp, interval, w->window_s);
    int used = 2, width = cols > 40 ? cols - 24 : 16;
    if (width > CW_WATCH_SAMPLES)
        width = CW_WATCH_SAMPLES;
    for (int i = 0; i < w->nprocs; i++) {
        const struct cw_watch_proc *wp = &w->procs[i];
        const struct cw_vprocess *p = live_proc(v, wp->pid);
        if (!p) {
            fprintf(out, "pid %d: exited\n\n", wp->pid);
            used += 2;
            continue;
        }
        fprintf(out, "%s\n", p->cmdline[0] ? p->cmdline : p->exe);
        counts_line(out, p);
        fprintf(out, "  CLOSE_WAIT %6d  ", wp->n ? wp->close_wait[wp->n - 1] : 0);
        sparkline(out, wp->close_wait, wp->n, width);
        fprintf(out, "\n  sockets    %6d  ", wp->n ? wp->open[wp->n - 1] : 0);
        sparkline(out, wp->open, wp->n, width);
        fputc('\n', out);
        used += 4;
        if (wp->last_growth_at > 0) {
            fputs("  ", out);
            growth_line(out, &wp->last_growth, cols - 2);
            used++;
        }
        /* The newest CLOSE_WAIT sockets, as many as fit. */
        int budget = (rows - used - 1) / (w->nprocs - i) - 2, shown = 0, total = 0;
        for (int j = v->nshown - 1; j >= 0; j--) {
            const struct cw_vfinding *f = &v->findings[j];
            if (f->proc != p || !is_close_wait(f))
                continue;
            total++;
            if (shown < budget) {
                socket_line(out, f, cols);
                shown++;
            }
        }
        if (total > shown)
            fprintf(out, "  ... and %d more in CLOSE_WAIT\n", total - shown);
        fputc('\n', out);
        used += shown + 1 + (total > shown);
    }
}

void cw_report_watch(FILE *out, const struct cw_view *v, const struct cw_watch *w,
                     const struct cw_watch_screen *screen)
{
    if (screen->tty)
        print_screen(out, v, w, screen->stamp, screen->interval, screen->rows, screen->cols);
    else
        print_piped(out, v, w, screen->stamp);
}

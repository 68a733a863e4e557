/*
 * report_metrics.c - the view as OpenMetrics text (also valid Prometheus
 * text format 0.0.4, which node_exporter's textfile collector reads): per
 * process, its sockets by TCP state, findings by kind, fds in use and their
 * limit, and where its CLOSE_WAIT sockets were opened — the top N places
 * as labels, the rest summed as location="other", so a leak cannot blow up
 * the number of series.
 */
#include <stdlib.h>
#include <string.h>

#include "report.h"

/* A label value: backslash, double quote and newline escaped. */
static void label(FILE *out, const char *name, const char *value, int first)
{
    fprintf(out, "%s%s=\"", first ? "" : ",", name);
    for (const char *c = value ? value : ""; *c; c++) {
        if (*c == '\\' || *c == '"')
            fputc('\\', out);
        if (*c == '\n')
            fputs("\\n", out);
        else
            fputc(*c, out);
    }
    fputc('"', out);
}

static void proc_labels(FILE *out, const struct cw_vprocess *p)
{
    char pid[16];
    snprintf(pid, sizeof pid, "%d", p->pid);
    label(out, "pid", pid, 1);
    label(out, "exe", p->exe[0] ? p->exe : p->cmdline, 0);
}

static void family(FILE *out, const char *name, const char *help)
{
    fprintf(out, "# TYPE %s gauge\n# HELP %s %s\n", name, name, help);
}

struct place {
    char where[512];
    int n;
};

static int by_count(const void *x, const void *y)
{
    const struct place *a = x, *b = y;
    return a->n != b->n ? b->n - a->n : strcmp(a->where, b->where);
}

static int counts_as_close_wait(const struct cw_vfinding *f)
{
    return f->kind->kind == CW_K_CLOSE_WAIT || f->kind->kind == CW_K_UNTRACKED;
}

/* Where p's sockets in CLOSE_WAIT were opened, the most common first. */
static int places_of(const struct cw_view *v, const struct cw_vprocess *p, struct place *out)
{
    int n = 0;
    for (int i = 0; i < v->nshown; i++) {
        const struct cw_vfinding *f = &v->findings[i];
        if (f->proc != p || !counts_as_close_wait(f))
            continue;
        const struct cw_vframe *at = f->open.at;
        char where[512];
        if (at && at->file)
            snprintf(where, sizeof where, "%s:%d", at->file, at->line);
        else if (at && at->function)
            snprintf(where, sizeof where, "%s", at->function);
        else
            snprintf(where, sizeof where, "unknown");
        int k = 0;
        while (k < n && strcmp(out[k].where, where))
            k++;
        if (k == n) {
            snprintf(out[n].where, sizeof out[n].where, "%s", where);
            out[n++].n = 0;
        }
        out[k].n++;
    }
    qsort(out, (size_t)n, sizeof *out, by_count);
    return n;
}

void cw_report_metrics(FILE *out, const struct cw_view *v, int top)
{
    family(out, "closewatch_sockets",
           "Sockets the process holds, by TCP state, as the kernel shows them (non-TCP sockets "
           "as state non_tcp).");
    for (int i = 0; i < v->nprocs; i++) {
        const struct cw_vprocess *p = &v->procs[i];
        if (!p->has_kernel_view)
            continue;
        for (int s = 0; s < p->ntcp_states; s++) {
            fputs("closewatch_sockets{", out);
            proc_labels(out, p);
            label(out, "state", p->tcp_states[s].name, 0);
            fprintf(out, "} %d\n", p->tcp_states[s].n);
        }
        fputs("closewatch_sockets{", out);
        proc_labels(out, p);
        label(out, "state", "non_tcp", 0);
        fprintf(out, "} %d\n", p->non_tcp);
    }

    family(out, "closewatch_findings",
           "Findings by kind, past the grace and not suppressed (close_wait: sockets in "
           "CLOSE_WAIT without close()).");
    for (int i = 0; i < v->nprocs; i++) {
        const struct cw_vprocess *p = &v->procs[i];
        int by_kind[CW_K_COUNT] = {0};
        for (int j = 0; j < v->nshown; j++)
            if (v->findings[j].proc == p)
                by_kind[v->findings[j].kind->kind]++;
        for (int k = 0; k < CW_K_COUNT; k++) {
            fputs("closewatch_findings{", out);
            proc_labels(out, p);
            label(out, "kind", cw_kind_name((enum cw_kind)k), 0);
            fprintf(out, "} %d\n", by_kind[k]);
        }
    }

    family(out, "closewatch_fds_open", "File descriptors the process holds.");
    for (int i = 0; i < v->nprocs; i++)
        if (v->procs[i].has_kernel_view && v->procs[i].fds_open >= 0) {
            fputs("closewatch_fds_open{", out);
            proc_labels(out, &v->procs[i]);
            fprintf(out, "} %d\n", v->procs[i].fds_open);
        }
    family(out, "closewatch_fds_limit",
           "The process's soft limit on file descriptors (RLIMIT_NOFILE).");
    for (int i = 0; i < v->nprocs; i++)
        if (v->procs[i].has_kernel_view && v->procs[i].fds_limit >= 0) {
            fputs("closewatch_fds_limit{", out);
            proc_labels(out, &v->procs[i]);
            fprintf(out, "} %ld\n", v->procs[i].fds_limit);
        }

    family(out, "closewatch_close_wait_by_location",
           "Sockets in CLOSE_WAIT past the grace, by the source line that opened them: the most "
           "common places, the rest summed as location other.");
    for (int i = 0; i < v->nprocs; i++) {
        const struct cw_vprocess *p = &v->procs[i];
        struct place *places = calloc((size_t)v->nshown + 1, sizeof *places);
        if (!places)
            continue;
        int n = places_of(v, p, places), other = 0;
        for (int k = 0; k < n; k++) {
            if (k >= top) {
                other += places[k].n;
                continue;
            }
            fputs("closewatch_close_wait_by_location{", out);
            proc_labels(out, p);
            label(out, "location", places[k].where, 0);
            fprintf(out, "} %d\n", places[k].n);
        }
        if (other) {
            fputs("closewatch_close_wait_by_location{", out);
            proc_labels(out, p);
            label(out, "location", "other", 0);
            fprintf(out, "} %d\n", other);
        }
        free(places);
    }
    fputs("# EOF\n", out);
}

/*
 * report_watch.c - one look of `closewatch watch PID`: the live process's
 * sockets by TCP state, then each socket in CLOSE_WAIT with where it was
 * opened.
 */
#include "report.h"

void cw_report_watch(FILE *out, const struct cw_view *v, const char *stamp)
{
    for (int i = 0; i < v->nprocs; i++) {
        const struct cw_vprocess *p = &v->procs[i];
        if (!p->has_kernel_view)
            continue;
        fprintf(out, "%s pid %d: %d sockets:", stamp, p->pid, p->kernel_sockets);
        for (int s = 0; s < p->ntcp_states; s++)
            fprintf(out, " %s %d", p->tcp_states[s].name, p->tcp_states[s].n);
        fprintf(out, " non-TCP %d\n", p->non_tcp);
    }
    for (int i = 0; i < v->nshown; i++) {
        const struct cw_vfinding *f = &v->findings[i];
        if (f->kind->kind != CW_K_CLOSE_WAIT && f->kind->kind != CW_K_UNTRACKED)
            continue;
        fprintf(out, "  CLOSE_WAIT fd %d %s <-> %s %.1f s recv-q %u eof %s", f->fd,
                f->local[0] ? f->local : "-", f->peer[0] ? f->peer : "-", f->seconds_in_close_wait,
                f->recv_q, f->eof);
        const struct cw_vframe *at = f->open.at;
        if (at && at->function)
            fprintf(out, " opened in %s", at->function);
        if (at && at->file)
            fprintf(out, " %s:%d", at->file, at->line);
        fputc('\n', out);
    }
}

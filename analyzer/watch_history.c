/*
 * watch_history.c - taking in `watch`'s looks (see watch_history.h): the
 * sample series, which CLOSE_WAIT sockets are new, and to which opening
 * place (and EOF place) the growth of a window belongs.
 */
#include "watch_history.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

static int is_close_wait(const struct cw_vfinding *f)
{
    return f->kind->kind == CW_K_CLOSE_WAIT || f->kind->kind == CW_K_UNTRACKED;
}

static uint64_t key_of(const struct cw_vfinding *f)
{
    return f->inode ? f->inode : (1ull << 63) | (uint32_t)f->fd;
}

static void place(char *buf, size_t len, const struct cw_vstack *s)
{
    const struct cw_vframe *at = s->at;
    if (at && at->file)
        snprintf(buf, len, "%s:%d", at->file, at->line);
    else if (at && at->function)
        snprintf(buf, len, "%s", at->function);
    else
        buf[0] = '\0';
}

static double seen_at(const struct cw_watch_proc *p, uint64_t key, double now)
{
    for (int i = 0; i < p->nseen; i++)
        if (p->seen[i].inode == key)
            return p->seen[i].first_seen;
    return now;
}

/* The most common non-empty string among v[0..n) (each 512 bytes), and how
 * often it occurs. */
static int most_common(char (*v)[512], int n, char *out)
{
    int best = 0;
    out[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (!v[i][0])
            continue;
        int c = 0;
        for (int j = 0; j < n; j++)
            c += !strcmp(v[i], v[j]);
        if (c > best) {
            best = c;
            memcpy(out, v[i], 512);
        }
    }
    return best;
}

static void sample(struct cw_watch_proc *p, double now, int close_wait, int open)
{
    if (p->n == CW_WATCH_SAMPLES) {
        memmove(p->t, p->t + 1, (CW_WATCH_SAMPLES - 1) * sizeof *p->t);
        memmove(p->close_wait, p->close_wait + 1, (CW_WATCH_SAMPLES - 1) * sizeof(int));
        memmove(p->open, p->open + 1, (CW_WATCH_SAMPLES - 1) * sizeof(int));
        p->n--;
    }
    p->t[p->n] = now;
    p->close_wait[p->n] = close_wait;
    p->open[p->n++] = open;
}

static void take_look(struct cw_watch *w, struct cw_watch_proc *p, const struct cw_view *v,
                      double now)
{
    const struct cw_vprocess *live = NULL;
    for (int i = 0; i < v->nprocs; i++)
        if (v->procs[i].pid == p->pid && v->procs[i].has_kernel_view)
            live = &v->procs[i];
    p->alive = live != NULL;
    if (!live)
        return;
    int close_wait = 0;
    for (int s = 0; s < live->ntcp_states; s++)
        if (!strcmp(live->tcp_states[s].name, "CLOSE_WAIT"))
            close_wait = live->tcp_states[s].n;
    sample(p, now, close_wait, live->kernel_sockets);

    /* Which CLOSE_WAIT sockets are there now, since when. */
    int n = 0;
    for (int i = 0; i < v->nshown; i++)
        n += v->findings[i].proc->pid == p->pid && is_close_wait(&v->findings[i]);
    struct cw_watch_seen *seen = cw_xcalloc((size_t)n, sizeof *seen);
    char(*opened)[512] = cw_xcalloc((size_t)n, sizeof *opened);
    int k = 0, fresh = 0;
    p->new_since_last = 0;
    for (int i = 0; i < v->nshown; i++) {
        const struct cw_vfinding *f = &v->findings[i];
        if (f->proc->pid != p->pid || !is_close_wait(f))
            continue;
        seen[k].inode = key_of(f);
        seen[k].first_seen = seen_at(p, seen[k].inode, now);
        p->new_since_last += seen[k].first_seen == now && p->n > 1;
        k++;
    }

    /* Growth over the window: the count now against the oldest sample in it. */
    int start = 0;
    while (start < p->n - 1 && p->t[start] < now - w->window_s)
        start++;
    struct cw_watch_growth *g = &p->growth;
    memset(g, 0, sizeof *g);
    g->grew = p->n >= 2 && close_wait > p->close_wait[p->n - 2];
    g->delta = close_wait - p->close_wait[start];
    g->window_s = now - p->t[start];
    if (g->grew && g->delta > 0) {
        /* The sockets new in the window: where were they opened, where was
         * their EOF seen? */
        k = 0;
        for (int i = 0; i < v->nshown; i++) {
            const struct cw_vfinding *f = &v->findings[i];
            if (f->proc->pid != p->pid || !is_close_wait(f))
                continue;
            if (seen[k++].first_seen > p->t[start])
                place(opened[fresh++], sizeof *opened, &f->open);
        }
        g->top_n = most_common(opened, fresh, g->opened);
        fresh = 0;
        k = 0;
        for (int i = 0; g->top_n && i < v->nshown; i++) {
            const struct cw_vfinding *f = &v->findings[i];
            if (f->proc->pid != p->pid || !is_close_wait(f))
                continue;
            char here[512];
            place(here, sizeof here, &f->open);
            if (seen[k++].first_seen > p->t[start] && !strcmp(here, g->opened))
                place(opened[fresh++], sizeof *opened, &f->eof_stack);
        }
        char eof[512];
        if (most_common(opened, fresh, eof))
            memcpy(g->eof_at, eof, sizeof g->eof_at);
        p->last_growth = *g;
        p->last_growth_at = now;
    }
    free(opened);
    free(p->seen);
    p->seen = seen;
    p->nseen = n;
}

void cw_watch_update(struct cw_watch *w, const struct cw_view *v, double now)
{
    for (int i = 0; i < w->nprocs; i++)
        if (w->procs[i].alive)
            take_look(w, &w->procs[i], v, now);
}

void cw_watch_free(struct cw_watch *w)
{
    for (int i = 0; i < w->nprocs; i++)
        free(w->procs[i].seen);
    free(w->procs);
    w->procs = NULL;
    w->nprocs = 0;
}

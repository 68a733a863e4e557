/*
 * tree_view.c - `closewatch run`'s own look at the process tree it runs:
 * the kernel's view of every descendant that no ring covers (a static
 * binary such as a CGO_ENABLED=0 Go program, which LD_PRELOAD never
 * reaches), taken once per period, and of every process in the tree just
 * before a terminating signal is forwarded (what the signal ends is gone
 * by the time the report is made; a Go program's sampler may not have had
 * a round since its sockets went to CLOSE_WAIT). A process without a ring is reported
 * from its last view alone: no stacks, but every socket the kernel showed
 * in CLOSE_WAIT, dated by the kernel.
 */
#include "tree_view.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model.h"

/* The ring files of the run directory, listed once per look at the tree. */
struct ring_list {
    char **paths;
    int n;
};

/* Whether the list holds a ring of this very process (pid and start time). */
static int has_ring(const struct ring_list *l, int pid, uint64_t start)
{
    char prefix[64];
    int plen = snprintf(prefix, sizeof prefix, CW_FILE_PREFIX "%d.", pid);
    for (int i = 0; i < l->n; i++) {
        const char *base = strrchr(l->paths[i], '/');
        if (strncmp(base ? base + 1 : l->paths[i], prefix, (size_t)plen))
            continue;
        struct cw_ring r;
        char err[256];
        if (cw_ring_open(&r, l->paths[i], err, sizeof err) == CW_RING_OK) {
            int same = r.hdr.proc_starttime == start;
            cw_ring_close(&r);
            if (same)
                return 1;
        }
    }
    return 0;
}

static struct cw_tree_proc *slot_of(struct cw_tree *t, int pid, uint64_t start)
{
    for (int i = 0; i < t->n; i++)
        if (t->v[i].pid == pid && t->v[i].start == start)
            return &t->v[i];
    struct cw_tree_proc *v = realloc(t->v, (size_t)(t->n + 1) * sizeof *v);
    if (!v)
        return NULL;
    t->v = v;
    struct cw_tree_proc *s = &t->v[t->n++];
    memset(s, 0, sizeof *s);
    s->pid = pid;
    s->start = start;
    return s;
}

static int holds_tcp(const struct cw_kview *kv)
{
    for (int i = 0; i < kv->n; i++)
        if (kv->socks[i].is_tcp)
            return 1;
    return 0;
}

void cw_tree_sample(struct cw_tree *t, int root, int everyone)
{
    /* The tree from /proc: each process's parent, then who descends from root. */
    int npids = 0, cap = 0;
    struct {
        int pid, ppid;
        uint64_t start;
    } *all = NULL;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        int pid = atoi(e->d_name), ppid;
        uint64_t start;
        char state;
        if (pid <= 0 || !cw_proc_stat(pid, &state, &ppid, &start))
            continue;
        if (npids == cap) {
            cap = cap ? cap * 2 : 256;
            void *v = realloc(all, (size_t)cap * sizeof *all);
            if (!v)
                break;
            all = v;
        }
        all[npids].pid = pid;
        all[npids].ppid = ppid;
        all[npids++].start = start;
    }
    if (d)
        closedir(d);
    struct ring_list rings;
    rings.n = everyone ? 0 : cw_find_rings(t->ring_dir, 0, &rings.paths);
    if (everyone)
        rings.paths = NULL;
    for (int i = 0; i < npids; i++) {
        int q = all[i].pid, hops = 0;
        while (q != root && q > 1 && hops++ < 64) {
            int parent = 0;
            for (int j = 0; j < npids && !parent; j++)
                if (all[j].pid == q)
                    parent = all[j].ppid;
            q = parent;
        }
        /* A traced process has a sampler of its own: between signals only
         * the others cost us a look (each is a sock_diag dump). */
        if (q != root || (!everyone && has_ring(&rings, all[i].pid, all[i].start)))
            continue;
        struct cw_kview kv;
        char err[256];
        if (cw_kernel_view(all[i].pid, &kv, err, sizeof err) != 0)
            continue;
        struct cw_tree_proc *s = holds_tcp(&kv) ? slot_of(t, all[i].pid, all[i].start) : NULL;
        if (!s) {
            cw_kview_free(&kv);
            continue;
        }
        cw_kview_free(&s->kv);
        s->kv = kv;
        s->kv.proc_starttime = all[i].start;
        cw_proc_exe(all[i].pid, s->exe, sizeof s->exe);
    }
    cw_free_paths(rings.paths, rings.n);
    free(all);
}

void cw_tree_report(struct cw_tree *t, struct cw_analysis *a)
{
    /* For processes with a ring, the model takes the view of one that died. */
    t->views = calloc((size_t)t->n + 1, sizeof *t->views);
    for (int i = 0; t->views && i < t->n; i++)
        t->views[i] = &t->v[i].kv;
    a->last_views = (const struct cw_kview *const *)t->views;
    a->nlast_views = t->views ? t->n : 0;
    struct ring_list rings;
    rings.n = cw_find_rings(t->ring_dir, 0, &rings.paths);
    for (int i = 0; i < t->n; i++)
        /* A process that made a ring (perhaps only at its first socket) is
         * judged from that ring. */
        if (!has_ring(&rings, t->v[i].pid, t->v[i].start))
            cw_analyze_kernel_view(a, &t->v[i].kv, t->v[i].exe, t->v[i].kv.taken_mono_ns);
    cw_free_paths(rings.paths, rings.n);
}

void cw_tree_free(struct cw_tree *t)
{
    for (int i = 0; i < t->n; i++)
        cw_kview_free(&t->v[i].kv);
    free(t->v);
    free(t->views);
    t->views = NULL;
    t->v = NULL;
    t->n = 0;
}

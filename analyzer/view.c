/*
 * view.c - building the resolved view (view.h) from an analysis: stacks
 * symbolized once each (findings that share a stack share its frames),
 * suppressions matched against those frames, findings grouped, every fact
 * put into words, the counts and the SUMMARY line.
 */
#include "view_build.h"

#include <errno.h>
#include <string.h>

#include "dump.h"
#include "json.h"
#include "xalloc.h"

#define FRAMES_MAX 96 /* a stack's frames including inlined ones */

/* ---- stacks ------------------------------------------------------------------ */

/* Resolved stacks by (ring, id): a group of 1,000 leaks from one accept()
 * is symbolized once. */
struct stack_entry {
    const struct cw_process *p;
    uint32_t id;
    struct cw_vstack st;
};

struct stack_cache {
    struct stack_entry *v;
    size_t cap, n;
};

static size_t stack_slot(const struct stack_cache *c, const struct cw_process *p, uint32_t id)
{
    uint64_t h = ((uint64_t)(uintptr_t)p ^ ((uint64_t)id << 32 | id)) * 0x9e3779b97f4a7c15ull;
    size_t i = (size_t)(h >> 20) & (c->cap - 1);
    while (c->v[i].p && (c->v[i].p != p || c->v[i].id != id))
        i = (i + 1) & (c->cap - 1);
    return i;
}

static void cache_grow(struct stack_cache *c)
{
    struct stack_cache bigger = {.cap = c->cap ? c->cap * 2 : 64};
    bigger.v = cw_xcalloc(bigger.cap, sizeof *bigger.v);
    for (size_t i = 0; i < c->cap; i++)
        if (c->v[i].p)
            bigger.v[stack_slot(&bigger, c->v[i].p, c->v[i].id)] = c->v[i];
    bigger.n = c->n;
    free(c->v);
    *c = bigger;
}

/* System libraries (libc's close() wrapper, with libc6-dbg installed) have
 * source lines too, but the line to fix is in the program's code. */
static int is_system_module(const char *m)
{
    return m && (!strncmp(m, "/lib/", 5) || !strncmp(m, "/lib64/", 7) ||
                 !strncmp(m, "/usr/lib/", 9) || !strncmp(m, "/usr/lib64/", 11));
}

static const struct cw_vframe *placing_frame(const struct cw_vframe *f, int n)
{
    for (int i = 0; i < n; i++)
        if (f[i].file && f[i].line && !f[i].system)
            return &f[i];
    for (int i = 0; i < n; i++)
        if (f[i].file && f[i].line)
            return &f[i];
    return n ? &f[0] : NULL;
}

static struct cw_vstack resolve(struct cw_symbolizer *sym, const struct cw_process *p, uint32_t id)
{
    struct cw_vstack st = {0};
    if (!id || !p->has_ring)
        return st;
    uint64_t pcs[CW_MAX_DEPTH];
    struct cw_sym_frame sf[FRAMES_MAX];
    int n = cw_ring_stack(&p->ring, id, pcs, CW_MAX_DEPTH), used = 0;
    for (int i = 0; i < n && used < FRAMES_MAX; i++) {
        int got =
            cw_symbolize(sym, p->modules, p->nmodules, pcs[i], 1, sf + used, FRAMES_MAX - used);
        /* closewatch's own frames (the hook, the walk) are not the program's. */
        if (got > 0 && sf[used + got - 1].module && cw_sym_is_own_module(sf[used + got - 1].module))
            continue;
        used += got;
    }
    struct cw_vframe *f = cw_xcalloc((size_t)used, sizeof *f);
    for (int i = 0; i < used; i++)
        f[i] = (struct cw_vframe){.address = sf[i].address,
                                  .module = sf[i].module,
                                  .function = sf[i].function,
                                  .file = sf[i].file,
                                  .line = sf[i].line,
                                  .column = sf[i].column,
                                  .inlined = sf[i].inlined,
                                  .system = is_system_module(sf[i].module),
                                  .lang = CW_LANG_NATIVE};
    st.frames = f;
    st.n = used;
    st.at = placing_frame(f, used);
    return st;
}

static struct cw_vstack stack_of(struct stack_cache *c, struct cw_symbolizer *sym,
                                 const struct cw_process *p, uint32_t id)
{
    static const struct cw_vstack none;
    if (!id || !p->has_ring)
        return none;
    if (2 * (c->n + 1) > c->cap)
        cache_grow(c);
    size_t i = stack_slot(c, p, id);
    if (!c->v[i].p) {
        c->v[i] = (struct stack_entry){.p = p, .id = id, .st = resolve(sym, p, id)};
        c->n++;
    }
    return c->v[i].st;
}

/* ---- processes --------------------------------------------------------------- */

static const char *end_name(enum cw_end e)
{
    static const char *const names[] = {"running", "exited", "execed", "died", "no ring"};
    return (unsigned)e <= CW_END_NO_RING ? names[e] : "unknown";
}

static void describe_process(struct cw_vprocess *v, const struct cw_process *p, char *started)
{
    *v = (struct cw_vprocess){
        .pid = p->pid,
        .ppid = p->ppid,
        .exe = p->exe,
        .cmdline = p->cmdline,
        .ring = p->has_ring ? p->ring_path : NULL,
        .has_ring = p->has_ring,
        .state = end_name(p->end),
        .duration_s = p->start_mono_ns && p->end_mono_ns > p->start_mono_ns
                          ? (double)(p->end_mono_ns - p->start_mono_ns) / 1e9
                          : 0.0,
        .sockets_seen = p->sockets_seen,
        .sockets_open = p->sockets_open,
        .events = p->events,
        .overwritten = p->overwritten,
        .torn = p->torn,
        .dropped = p->dropped,
        .stacks_dropped = p->stacks_dropped,
        .has_kernel_view = p->kernel.valid,
        .kernel_sockets = p->kernel.sockets,
        .non_tcp = p->kernel.non_tcp,
    };
    for (int s = 1; s < 12; s++)
        if (p->kernel.tcp_states[s]) {
            v->tcp_states[v->ntcp_states].name = cw_tcp_state_name((unsigned)s);
            v->tcp_states[v->ntcp_states++].n = p->kernel.tcp_states[s];
        }
    if (p->has_ring) {
        struct cw_series_point pts[CW_SERIES_CAP];
        int n = cw_ring_series(&p->ring, pts, CW_SERIES_CAP);
        struct cw_vpoint *vp = n ? cw_xcalloc((size_t)n, sizeof *vp) : NULL;
        for (int i = 0; i < n; i++)
            vp[i] = (struct cw_vpoint){.t = pts[i].mono_ns > p->start_mono_ns
                                                ? (double)(pts[i].mono_ns - p->start_mono_ns) / 1e9
                                                : 0.0,
                                       .open = (int)pts[i].open,
                                       .close_wait = (int)pts[i].close_wait};
        v->series = vp;
        v->nseries = n;
    }
    if (p->start_realtime_ns) {
        cw_iso8601(started, 40, p->start_realtime_ns);
        v->started = started;
    }
}

/* The view's process for a model process (procs are few; findings many). */
static const struct cw_vprocess *vproc_of(const struct cw_view *v, const struct cw_analysis *a,
                                          const struct cw_process *p)
{
    for (int i = 0; i < a->nprocs; i++)
        if (a->procs[i] == p)
            return &v->procs[i];
    return NULL;
}

/* ---- findings ---------------------------------------------------------------- */

static const char *eof_name(enum cw_eof e)
{
    static const char *const names[] = {"none", "observed", "unread", "unknown"};
    return (unsigned)e <= CW_EOF_UNKNOWN ? names[e] : "unknown";
}

static const char *eof_sentence(enum cw_eof e)
{
    switch (e) {
    case CW_EOF_OBSERVED:
        return "eof: observed (the program saw the peer's FIN and went on without close())";
    case CW_EOF_UNREAD:
        return "eof: unread (the program never looked at the socket again after the peer closed "
               "it)";
    case CW_EOF_UNKNOWN:
        return "eof: unknown (no ring: kernel view only, no backtraces exist for this process)";
    default: return NULL;
    }
}

/* What an event's argument says, in words, where it says something. */
static void event_detail(char *buf, size_t len, const struct cw_timeline_entry *e)
{
    buf[0] = '\0';
    switch (e->type) {
    case CW_EV_OPEN: snprintf(buf, len, "%s", cw_origin_name((unsigned)(e->arg0 & 0xff))); break;
    case CW_EV_EOF: snprintf(buf, len, "%s", cw_eof_how_name((unsigned)e->arg0)); break;
    case CW_EV_CLOSE: snprintf(buf, len, "%s", cw_close_how_name((unsigned)e->arg0)); break;
    case CW_EV_STATE: snprintf(buf, len, "%s", cw_tcp_state_name((unsigned)e->arg0)); break;
    case CW_EV_CONNECT: snprintf(buf, len, "returned %lld", (long long)e->arg0); break;
    case CW_EV_ERROR: snprintf(buf, len, "errno %lld", (long long)e->arg0); break;
    default: break;
    }
}

/* Seconds from start to t; -1 when t is unknown (0). */
static double since(uint64_t t, uint64_t start)
{
    return !t ? -1 : t > start ? (double)(t - start) / 1e9 : 0.0;
}

static void describe_finding(struct cw_vfinding *v, const struct cw_finding *f)
{
    v->fd = f->fd;
    v->socket_id = f->sid;
    v->inode = f->inode;
    v->family = cw_family_name((unsigned)f->family);
    v->origin = cw_origin_name((unsigned)f->origin);
    v->inherited = f->origin == CW_ORIGIN_INHERITED;
    if (f->local.family)
        cw_format_addr(&f->local, v->local, sizeof v->local);
    if (f->peer.family)
        cw_format_addr(&f->peer, v->peer, sizeof v->peer);
    v->eof = eof_name(f->eof);
    v->eof_how = f->eof_ns ? cw_eof_how_name((unsigned)f->eof_how) : NULL;
    v->eof_by_read = f->eof_how == CW_EOF_READ;
    v->eof_sentence = eof_sentence(f->eof);
    v->eof_count = f->eof_count;
    v->seconds_in_close_wait = f->seconds_in_close_wait;
    v->age_seconds = f->age_seconds;
    v->closed = f->closed;
    v->closed_at_exit = f->closed_at_exit;
    v->close_how = f->closed && f->close_how ? cw_close_how_name((unsigned)f->close_how) : NULL;
    v->tcp_state = cw_tcp_state_name((unsigned)f->tcp_state);
    v->recv_q = f->recv_q;
    if (f->kind == CW_K_EMFILE) {
        v->errno_name = f->err == ENFILE ? "ENFILE" : "EMFILE";
        v->sockets_open = f->sockets_open;
    }
    uint64_t start = f->proc->start_mono_ns;
    v->open_t = since(f->open_ns, start);
    v->eof_t = since(cw_peer_fin_ns(f->eof_ns, f->close_wait_ns), start);
    v->close_t = f->closed ? since(f->close_ns, start) : -1;
    for (int i = 0; i < f->ntimeline && i < CW_VTIMELINE_MAX; i++) {
        const struct cw_timeline_entry *e = &f->timeline[i];
        struct cw_vevent *ve = &v->timeline[v->ntimeline++];
        ve->t = e->mono_ns > start ? (double)(e->mono_ns - start) / 1e9 : 0.0;
        ve->event = cw_event_type_name(e->type);
        event_detail(ve->detail, sizeof ve->detail, e);
    }
}

/* ---- the whole view ---------------------------------------------------------- */

struct view_store {
    struct cw_view v;
    struct stack_cache stacks;
    char (*started)[40];
};

static void summary_line(struct cw_view *v)
{
    char *buf = v->summary;
    size_t len = sizeof v->summary, n;
    if (!v->errors)
        n = (size_t)snprintf(buf, len, "SUMMARY: closewatch: no leaked sockets in %d process%s",
                             v->nprocs, v->nprocs == 1 ? "" : "es");
    else
        n = (size_t)snprintf(buf, len, "SUMMARY: closewatch: %d finding%s in %d process%s (",
                             v->errors, v->errors == 1 ? "" : "s", v->nprocs,
                             v->nprocs == 1 ? "" : "es");
    if (v->errors) {
        const char *sep = "";
        for (int k = 0; k < CW_K_COUNT && n < len; k++) {
            if (!v->counts[k] || !cw_kind_is_error((enum cw_kind)k))
                continue;
            n += (size_t)snprintf(buf + n, len - n, "%s%s: %d", sep, cw_kind_name((enum cw_kind)k),
                                  v->counts[k]);
            sep = ", ";
        }
        if (n < len)
            n += (size_t)snprintf(buf + n, len - n, ")");
    }
    if (v->suppressed && n < len)
        n += (size_t)snprintf(buf + n, len - n, "; %d suppressed", v->suppressed);
    /* Not findings yet, but not nothing either: the user may be watching
     * them in `ss` right now. */
    if (v->young_close_wait && n < len)
        snprintf(buf + n, len - n, "; %d socket%s in CLOSE_WAIT for less than the grace of %g s",
                 v->young_close_wait, v->young_close_wait == 1 ? "" : "s", v->grace_s);
}

static void copy_warnings(struct cw_view *v, struct cw_symbolizer *sym)
{
    const char *const *w = cw_symbolizer_warnings(sym);
    int n = 0;
    while (w && w[n])
        n++;
    v->warnings = cw_xcalloc((size_t)n + 1, sizeof *v->warnings);
    for (int i = 0; i < n; i++) {
        v->warnings[i] = cw_oom_check(strdup(w[i]));
    }
}

/* Resolves one finding's stacks and matches the suppressions against the
 * ones that place it. */
static void resolve_finding(struct view_store *s, struct cw_symbolizer *sym,
                            struct cw_suppressions *sup, struct cw_finding *f,
                            struct cw_vfinding *out)
{
    out->open = stack_of(&s->stacks, sym, cw_open_proc(f), f->open_stack);
    out->eof_stack = stack_of(&s->stacks, sym, f->proc, f->eof_stack);
    out->close = stack_of(&s->stacks, sym, f->proc, f->close_stack);
    const struct cw_vstack *placing[2] = {&out->open, &out->eof_stack};
    int n = 2;
    if (cw_kind(f->kind)->placed_by == CW_PLACE_CLOSE) {
        placing[0] = &out->close;
        n = 1;
    }
    f->suppressed = sup ? cw_suppressions_match(sup, f->kind, placing, n, f->proc->exe) : 0;
}

struct cw_view *cw_view_build(struct cw_analysis *a, struct cw_symbolizer *sym,
                              struct cw_suppressions *sup)
{
    struct view_store *s = cw_xcalloc(1, sizeof *s);
    struct cw_view *v = &s->v;
    v->grace_s = a->opt.grace_s;
    v->spin_threshold = a->opt.spin_threshold;
    v->young_close_wait = a->young_close_wait;
    cw_iso8601(v->generated_at, sizeof v->generated_at, a->now_realtime_ns);

    v->nprocs = a->nprocs;
    v->procs = cw_xcalloc((size_t)a->nprocs, sizeof *v->procs);
    s->started = cw_xcalloc((size_t)a->nprocs, sizeof *s->started);
    for (int i = 0; i < a->nprocs; i++) {
        describe_process(&v->procs[i], a->procs[i], s->started[i]);
        v->quiet_procs += !a->procs[i]->sockets_seen && a->procs[i]->has_ring;
    }

    /* Stacks and suppressions first: grouping leaves suppressed findings out. */
    struct cw_vfinding *resolved = cw_xcalloc((size_t)a->nfindings, sizeof *resolved);
    for (int r = 0; sup && r < sup->n; r++)
        sup->v[r].hits = 0;
    for (int i = 0; i < a->nfindings; i++)
        resolve_finding(s, sym, sup, &a->findings[i], &resolved[i]);

    struct cw_group *groups;
    int ng = cw_group_findings(a, &groups);
    int *order = cw_xcalloc((size_t)a->nfindings, sizeof *order),
        *group_of = cw_xcalloc((size_t)a->nfindings, sizeof *group_of);
    v->findings = cw_xcalloc((size_t)a->nfindings, sizeof *v->findings);
    v->groups = cw_xcalloc((size_t)ng, sizeof *v->groups);
    v->ngroups = ng;
    int n = 0;
    for (int g = 0; g < ng; g++) {
        struct cw_vgroup *vg = &v->groups[g];
        vg->kind = cw_kind(groups[g].kind);
        vg->first = &v->findings[n];
        vg->n = groups[g].n;
        snprintf(vg->title, sizeof vg->title,
                 vg->n == 1 ? vg->kind->title_one : vg->kind->title_many, vg->n);
        for (int m = 0; m < groups[g].n; m++) {
            group_of[n] = g;
            order[n++] = groups[g].members[m];
        }
    }
    v->nshown = n;
    for (int i = 0; i < a->nfindings; i++)
        if (a->findings[i].suppressed) {
            group_of[n] = -1;
            order[n++] = i;
        }
    v->nfindings = n;
    cw_free_groups(groups, ng);

    for (int j = 0; j < n; j++) {
        const struct cw_finding *f = &a->findings[order[j]];
        struct cw_vfinding *vf = &v->findings[j];
        *vf = resolved[order[j]];
        vf->kind = cw_kind(f->kind);
        vf->group = group_of[j];
        vf->proc = vproc_of(v, a, f->proc);
        vf->opener = cw_open_proc(f) != f->proc ? vproc_of(v, a, cw_open_proc(f)) : NULL;
        vf->suppressed = f->suppressed;
        vf->placed = vf->kind->placed_by == CW_PLACE_CLOSE ? &vf->close : &vf->open;
        describe_finding(vf, f);
        if (f->suppressed)
            v->suppressed++;
        else
            v->counts[f->kind]++;
    }
    free(order);
    free(group_of);
    free(resolved);
    v->errors = cw_error_count(v->counts);

    if (sup) {
        v->suppressions_path = sup->path;
        v->nrules = sup->n;
        v->rules = cw_xcalloc((size_t)sup->n, sizeof *v->rules);
        for (int r = 0; r < sup->n; r++)
            v->rules[r] = (struct cw_vrule){
                .kind = sup->v[r].kind < 0 ? "socket" : cw_kind_name((enum cw_kind)sup->v[r].kind),
                .pattern = sup->v[r].pattern,
                .line = sup->v[r].line,
                .hits = sup->v[r].hits};
    }
    copy_warnings(v, sym);
    summary_line(v);
    return v;
}

void cw_view_free(struct cw_view *v)
{
    if (!v)
        return;
    struct view_store *s = (struct view_store *)v; /* v is its first member */
    for (size_t i = 0; i < s->stacks.cap; i++)
        if (s->stacks.v[i].p)
            free((void *)s->stacks.v[i].st.frames);
    free(s->stacks.v);
    for (int i = 0; v->warnings && v->warnings[i]; i++)
        free(v->warnings[i]);
    free(v->warnings);
    free(v->rules);
    free(v->findings);
    free(v->groups);
    for (int i = 0; i < v->nprocs; i++)
        free((void *)v->procs[i].series);
    free(v->procs);
    free(s->started);
    free(s);
}

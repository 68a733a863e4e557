/*
 * view.c - building the resolved view (view.h) from an analysis: stacks
 * symbolized once each (findings that share a stack share its frames),
 * suppressions matched against those frames, findings grouped, every fact
 * put into words, the counts and the SUMMARY line.
 */
#include "view_build.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "dump.h"
#include "json.h"
#include "lang_frames.h"
#include "program_kind.h"
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

struct view_store {
    struct cw_view v;
    struct stack_cache stacks;
    char (*started)[40];
    int all_frames; /* no folding of runtime internals */
    char **strings; /* runtime frames' names and files */
    size_t nstrings, cap_strings;
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

/* Go's runtime and standard library, linked into the program itself: a
 * function of a package whose path has no domain (net, runtime/internal/
 * syscall), not main, in a Go or Go assembly source file. */
static int is_go_std_frame(const char *function, const char *file)
{
    size_t n = file ? strlen(file) : 0;
    int go_source =
        (n > 3 && !strcmp(file + n - 3, ".go")) || (n > 2 && !strcmp(file + n - 2, ".s"));
    if (!function || !go_source || !strncmp(function, "main.", 5))
        return 0;
    const char *slash = strchr(function, '/');
    /* github.com/x/y.F: a dependency of the program, not Go's own. */
    return !slash || !memchr(function, '.', (size_t)(slash - function));
}

/* A runtime's own library code (the standard library, installed packages,
 * the JDK's classes, Node's built-in modules): a program's line is
 * elsewhere. */
static int is_library_file(const char *language, const char *file)
{
    if (!file || !*file || *file == '<') /* "<frozen importlib._bootstrap>" */
        return 1;
    if (!strcmp(language, "python"))
        return strstr(file, "/lib/python3") || strstr(file, "site-packages") ||
               strstr(file, "dist-packages");
    if (!strcmp(language, "java"))
        return !strncmp(file, "java/", 5) || !strncmp(file, "javax/", 6) ||
               !strncmp(file, "jdk/", 4) || !strncmp(file, "sun/", 4);
    if (!strcmp(language, "javascript"))
        return !strncmp(file, "node:", 5) || strstr(file, "node_modules/");
    return 0;
}

/* The frame that places a stack in the program's own code: its first
 * runtime frame outside the runtime's library, else its first runtime
 * frame, else its first native frame with a line outside system
 * libraries, else any with a line, else the first. */
static const struct cw_vframe *placing_frame(const struct cw_vframe *f, int n)
{
    const struct cw_vframe *lang = NULL;
    for (int i = 0; i < n; i++)
        if (strcmp(f[i].language, "c")) {
            if (!is_library_file(f[i].language, f[i].file))
                return &f[i];
            lang = lang ? lang : &f[i];
        }
    if (lang)
        return lang;
    for (int i = 0; i < n; i++)
        if (f[i].file && f[i].line && !f[i].system)
            return &f[i];
    for (int i = 0; i < n; i++)
        if (f[i].file && f[i].line)
            return &f[i];
    return n ? &f[0] : NULL;
}

/* Strings of runtime frames, kept for the view's life. */
static const char *keep(struct view_store *s, const char *str)
{
    if (!str || !*str)
        return NULL;
    if (s->nstrings == s->cap_strings) {
        s->cap_strings = s->cap_strings ? 2 * s->cap_strings : 256;
        s->strings = cw_xrealloc(s->strings, s->cap_strings * sizeof *s->strings);
    }
    return s->strings[s->nstrings++] = cw_oom_check(strdup(str));
}

/*
 * A recorded stack as the program's reader wants it: native frames
 * symbolized (inlined ones expanded, closewatch's own dropped) with the
 * runtime's frames (Python...) in their places among them. Unless all
 * frames are asked for, the runtime's internals are folded: its evaluation
 * loop, and past the first runtime frame the native frames of the runtime
 * itself, of system libraries and of code without a module (JIT code).
 */
static struct cw_vstack resolve(struct view_store *s, struct cw_symbolizer *sym,
                                const struct cw_process *p, uint32_t id, int all_frames)
{
    struct cw_vstack st = {0};
    if (!id || !p->has_ring)
        return st;
    enum { HMAX = CW_MAX_DEPTH + CW_LANG_DEPTH };
    struct cw_hframe *hf = cw_xcalloc(HMAX, sizeof *hf);
    int nh = cw_lang_hybrid(&p->ring, id, hf, HMAX, NULL);
    struct cw_vframe *f = cw_xcalloc((size_t)FRAMES_MAX + HMAX, sizeof *f);
    const char *runtime_module = NULL;
    int used = 0, seen_lang = 0, has_lang = 0, leaf = 1;
    for (int i = 0; i < nh; i++)
        has_lang |= hf[i].lang != CW_LANG_NATIVE;
    for (int i = 0; i < nh; i++) {
        if (hf[i].eval) {
            struct cw_sym_frame m;
            cw_symbolize(sym, p->modules, p->nmodules, hf[i].pc, 1, &m, 1);
            runtime_module = m.module;
            break;
        }
    }
    /* Frames handed over without an evaluation loop to merge at (Node's,
     * taken where the server was made): the runtime is the program's
     * executable, libuv and V8 included. */
    int merged = runtime_module != NULL; /* runtime frames sit among the native ones */
    if (has_lang && !runtime_module && p->exe[0])
        runtime_module = p->exe;
    for (int i = 0; i < nh && used < FRAMES_MAX + HMAX; i++) {
        if (hf[i].lang != CW_LANG_NATIVE) {
            f[used++] = (struct cw_vframe){.function = keep(s, hf[i].function),
                                           .file = keep(s, hf[i].file),
                                           .line = hf[i].line,
                                           .language = cw_lang_name(hf[i].lang)};
            seen_lang = 1;
            continue;
        }
        struct cw_sym_frame sf[FRAMES_MAX];
        int got = cw_symbolize(sym, p->modules, p->nmodules, hf[i].pc, 1, sf, FRAMES_MAX);
        /* closewatch's own frames (the hook, the walk) are not the program's. */
        if (got > 0 && sf[got - 1].module && cw_sym_is_own_module(sf[got - 1].module))
            continue;
        /* With runtime frames in the stack: the leaf (the call into libc,
         * the runtime's socket method) stays; the runtime's own code, and
         * past the first runtime frame the bootstrap (system libraries,
         * the interpreter's executable, JIT code without a module), fold. */
        const char *m = sf[got - 1].module;
        int in_runtime = runtime_module && m && !strcmp(m, runtime_module);
        int bootstrap = !m || is_system_module(m) || !strcmp(m, p->exe);
        int internal = hf[i].eval || (has_lang && !leaf && in_runtime) ||
                       ((seen_lang || (has_lang && !merged && !leaf)) && bootstrap);
        leaf = 0;
        if (internal && !all_frames) {
            st.folded += got;
            continue;
        }
        for (int k = 0; k < got && used < FRAMES_MAX + HMAX; k++)
            f[used++] = (struct cw_vframe){.address = sf[k].address,
                                           .module = sf[k].module,
                                           .function = sf[k].function,
                                           .file = sf[k].file,
                                           .line = sf[k].line,
                                           .column = sf[k].column,
                                           .inlined = sf[k].inlined,
                                           .system = is_system_module(sf[k].module) ||
                                                     is_go_std_frame(sf[k].function, sf[k].file),
                                           .language = "c"};
    }
    free(hf);
    for (int i = 0; i < used; i++)
        if (f[i].address || !strcmp(f[i].language, "c"))
            snprintf(f[i].address_text, sizeof f[i].address_text, "0x%016" PRIx64, f[i].address);
        else
            snprintf(f[i].address_text, sizeof f[i].address_text, "[%s]", f[i].language);
    st.frames = f;
    st.n = used;
    st.at = placing_frame(f, used);
    return st;
}

static struct cw_vstack stack_of(struct view_store *s, struct cw_symbolizer *sym,
                                 const struct cw_process *p, uint32_t id, int all_frames)
{
    struct stack_cache *c = &s->stacks;
    static const struct cw_vstack none;
    if (!id || !p->has_ring)
        return none;
    if (2 * (c->n + 1) > c->cap)
        cache_grow(c);
    size_t i = stack_slot(c, p, id);
    if (!c->v[i].p) {
        c->v[i] = (struct stack_entry){.p = p, .id = id, .st = resolve(s, sym, p, id, all_frames)};
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

/* Seconds since the process started at mono (0: not, -1). */
static double since_start(const struct cw_process *p, uint64_t mono)
{
    if (!mono)
        return -1;
    return mono > p->start_mono_ns ? (double)(mono - p->start_mono_ns) / 1e9 : 0.0;
}

static void describe_recording(struct view_store *s, struct cw_vprocess *v,
                               const struct cw_process *p)
{
    v->attached_t = v->detached_t = -1;
    if (!p->has_ring)
        return;
    const struct cw_header *h = &p->ring.hdr;
    v->recorder = h->recorder == CW_REC_BPF ? "bpf" : "preload";
    v->attached_t = since_start(p, h->attach_mono_ns);
    v->detached_t = since_start(p, h->detach_mono_ns);
    char note[256];
    if (v->attached_t >= 0 && v->detached_t >= 0)
        snprintf(note, sizeof note,
                 "recorded from the kernel from %.1f s to %.1f s into its life (closewatch "
                 "attached to it, then stopped): sockets opened outside that time have no stack",
                 v->attached_t, v->detached_t);
    else if (v->attached_t >= 0)
        snprintf(note, sizeof note,
                 "recorded from the kernel from %.1f s into its life (closewatch attached to it "
                 "then): sockets it opened before have no stack",
                 v->attached_t);
    else if (v->detached_t >= 0)
        snprintf(note, sizeof note,
                 "recorded from the kernel until %.1f s into its life (closewatch stopped while it "
                 "ran): sockets it opened later have no stack",
                 v->detached_t);
    else
        return;
    v->record_note = keep(s, note);
}

static void describe_process(struct view_store *s, struct cw_vprocess *v,
                             const struct cw_process *p, char *started)
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
        .fds_open = p->kernel.valid ? p->kernel.fds_open : -1,
        .fds_limit = p->kernel.valid ? p->kernel.fds_limit : -1,
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
    describe_recording(s, v, p);
    char why[256];
    for (unsigned lang = 1; p->has_ring && lang < CW_LANG_MAX && !v->runtime_note; lang++)
        if (cw_lang_unsupported(&p->ring, lang, why, sizeof why))
            v->runtime_note = keep(s, why);
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
    case CW_EV_OPEN:
        snprintf(buf, len, "%s", cw_origin_name((unsigned)cw_open_arg_origin(e->arg0)));
        break;
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

/* Who opened the socket, as the label of its open stack, or why there is
 * no such stack. */
/* Why an untracked socket (one the recorder never saw made) has no stack. */
static const char *untracked_why(const struct cw_vprocess *p, const struct cw_finding *f)
{
    if (!p->has_ring)
        return p->exe && (cw_program_kind(p->exe) & (CW_PROG_GO | CW_PROG_STATIC))
                   ? "this process did not run under libclosewatch.so, which cannot load into a "
                     "static or Go program; as root (or with CAP_BPF and CAP_PERFMON) `closewatch "
                     "run` records it from the kernel, with stacks"
                   : "this process did not run under libclosewatch.so";
    if (!strcmp(p->recorder, "preload"))
        return "the socket was created behind libc's back; as root (or with CAP_BPF and "
               "CAP_PERFMON) `closewatch run` records such programs from the kernel, with stacks";
    const struct cw_header *h = &f->proc->ring.hdr;
    if (h->attach_mono_ns && f->open_ns <= h->attach_mono_ns)
        return "it was open before closewatch attached to the process";
    if (h->detach_mono_ns && f->open_ns >= h->detach_mono_ns)
        return "it was opened after closewatch stopped recording the process";
    return "the kernel recorder did not see it made (io_uring, a socket received over a unix "
           "socket, or one made before the recorder followed this process)";
}

static void describe_open(struct cw_vfinding *v, const struct cw_finding *f)
{
    const struct cw_vprocess *p = v->proc;
    if (v->inherited && !v->opener)
        snprintf(v->open_label, sizeof v->open_label,
                 "opened by the parent process (pid %d), inherited, at:", p->ppid);
    else if (v->opener)
        snprintf(v->open_label, sizeof v->open_label,
                 "opened (%s) by pid %d and inherited, at:", v->origin, v->opener->pid);
    else
        snprintf(v->open_label, sizeof v->open_label, "opened (%s) at:", v->origin);
    if (v->open.n)
        return;
    if (v->inherited)
        snprintf(v->no_stack_note, sizeof v->no_stack_note,
                 "inherited from the parent process (pid %d): see its report for where it was "
                 "opened",
                 p->ppid);
    else if (v->kind->kind == CW_K_UNTRACKED || !p->has_ring)
        snprintf(v->no_stack_note, sizeof v->no_stack_note, "no backtrace: %s",
                 untracked_why(p, f));
}

/* ---- the whole view ---------------------------------------------------------- */

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
    int all = s->all_frames;
    out->open = stack_of(s, sym, cw_open_proc(f), f->open_stack, all);
    out->eof_stack = stack_of(s, sym, f->proc, f->eof_stack, all);
    out->close = stack_of(s, sym, f->proc, f->close_stack, all);
    out->listener_fd = f->listener.fd;
    if (f->listener.fd >= 0)
        out->listener = stack_of(s, sym, f->listener.open_proc ? f->listener.open_proc : f->proc,
                                 f->listener.open_stack, all);
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
    s->all_frames = a->opt.all_frames;
    cw_iso8601(v->generated_at, sizeof v->generated_at, a->now_realtime_ns);

    v->nprocs = a->nprocs;
    v->procs = cw_xcalloc((size_t)a->nprocs, sizeof *v->procs);
    s->started = cw_xcalloc((size_t)a->nprocs, sizeof *s->started);
    for (int i = 0; i < a->nprocs; i++) {
        describe_process(s, &v->procs[i], a->procs[i], s->started[i]);
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
        describe_open(vf, f);
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
    for (size_t i = 0; i < s->nstrings; i++)
        free(s->strings[i]);
    free(s->strings);
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

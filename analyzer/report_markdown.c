/*
 * report_markdown.c - the report to paste into a bug ticket: facts about the
 * run, a summary table, then one section per group of findings (worst first)
 * with its stacks in fenced blocks, its sockets, the first socket's timeline
 * and what to do, and the SUMMARY line last. Everything that came from the
 * traced program (paths, argv, symbols) is escaped so that it cannot break
 * the tables or the fences.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "dump.h"
#include "json.h"
#include "report.h"

#define SOCKETS_SHOWN 10
#define FENCE         "````````````````````````````````" /* the longest fence used */

/* ---- escaping -------------------------------------------------------------- */

/* Inline text and table cells: backslash-escapes what Markdown would read as
 * markup (a `|` would end the cell), and shows line breaks as `\n` because a
 * raw newline would end the table row. */
static void md_text(FILE *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '\n')
            fputs("\\\\n", out);
        else if (*p == '\r')
            fputs("\\\\r", out);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\\\x%02x", *p);
        else if (strchr("\\`*_[]<>|#~", *p))
            fprintf(out, "\\%c", *p);
        else
            fputc(*p, out);
    }
}

/* Code blocks show text verbatim, so only control characters need care:
 * a newline inside a symbol would look like another frame. */
static void code_text(FILE *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '\n')
            fputs("\\n", out);
        else if (*p == '\r')
            fputs("\\r", out);
        else if (*p == '\t')
            fputs("\\t", out);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(out, "\\x%02x", *p);
        else
            fputc(*p, out);
    }
}

/* A fence longer than any run of backticks inside, so a symbol or path
 * holding ``` cannot close the block early (up to 32; past that a line
 * would also have to start with the run, which frame lines never do). */
static void fenced(FILE *out, const char *body)
{
    int longest = 0, run = 0;
    for (const char *p = body; *p; p++) {
        run = *p == '`' ? run + 1 : 0;
        if (run > longest)
            longest = run;
    }
    int n = longest < 3 ? 3 : longest + 1 > 32 ? 32 : longest + 1;
    size_t len = strlen(body);
    fprintf(out, "%.*s\n%s%s%.*s\n\n", n, FENCE, body, len && body[len - 1] == '\n' ? "" : "\n", n,
            FENCE);
}

/* ---- stacks ---------------------------------------------------------------- */

static void frame_line(FILE *out, int i, const struct cw_sym_frame *f)
{
    fprintf(out, "#%-2d 0x%016" PRIx64 " in ", i, (uint64_t)f->address);
    code_text(out, f->function ? f->function : "??");
    if (f->file) {
        fputc(' ', out);
        code_text(out, f->file);
        fprintf(out, ":%d", (int)f->line);
    } else if (f->module) {
        fputs(" (", out);
        code_text(out, f->module);
        fputc(')', out);
    }
    if (f->inlined)
        fputs(" (inlined)", out);
    fputc('\n', out);
}

/* Writes "label" and the stack as a fenced block; nothing if it is empty. */
static void stack_block(FILE *out, struct cw_report *r, const struct cw_process *p, uint32_t id,
                        const char *label)
{
    struct cw_sym_frame f[CW_FRAMES_MAX];
    int n = cw_stack_frames(r->sym, p, id, f, CW_FRAMES_MAX);
    if (!n)
        return;
    char *body = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&body, &len);
    if (!mem)
        return;
    for (int i = 0; i < n; i++)
        frame_line(mem, i, &f[i]);
    fclose(mem);
    fprintf(out, "%s\n\n", label);
    fenced(out, body);
    free(body);
}

/* ---- facts ----------------------------------------------------------------- */

static double duration_s(const struct cw_process *p)
{
    return p->start_mono_ns && p->end_mono_ns > p->start_mono_ns
               ? (double)(p->end_mono_ns - p->start_mono_ns) / 1e9
               : 0.0;
}

static const char *program_of(const struct cw_process *p)
{
    return p->cmdline[0] ? p->cmdline : p->exe;
}

static void fact(FILE *out, const char *name, const char *value)
{
    fprintf(out, "| %s | ", name);
    md_text(out, value);
    fputs(" |\n", out);
}

static void process_facts(FILE *out, const struct cw_process *p)
{
    char buf[64];
    fact(out, "program", program_of(p));
    if (p->cmdline[0] && p->exe[0])
        fact(out, "executable", p->exe);
    snprintf(buf, sizeof buf, "%d (parent %d)", p->pid, p->ppid);
    fact(out, "pid", buf);
    if (p->start_realtime_ns)
        cw_iso8601(buf, sizeof buf, p->start_realtime_ns);
    else
        snprintf(buf, sizeof buf, "unknown");
    fact(out, "started", buf);
    snprintf(buf, sizeof buf, "%.1f s", duration_s(p));
    fact(out, "duration", buf);
    fact(out, "state", cw_end_name(p->end));
}

/* More than one process: one row each instead of one fact each. */
static void process_table(FILE *out, const struct cw_analysis *a)
{
    fputs("| pid | program | started | duration | state | sockets seen |\n", out);
    fputs("| ---: | --- | --- | ---: | --- | ---: |\n", out);
    for (int i = 0; i < a->nprocs; i++) {
        const struct cw_process *p = a->procs[i];
        char started[64] = "unknown";
        if (p->start_realtime_ns)
            cw_iso8601(started, sizeof started, p->start_realtime_ns);
        fprintf(out, "| %d | ", p->pid);
        md_text(out, program_of(p));
        fprintf(out, " | %s | %.1f s | %s | %d |\n", started, duration_s(p), cw_end_name(p->end),
                p->sockets_seen);
    }
    fputc('\n', out);
}

static void facts_table(FILE *out, const struct cw_analysis *a)
{
    char buf[320];
    fputs("| fact | value |\n| --- | --- |\n", out);
    if (a->nprocs == 1) {
        process_facts(out, a->procs[0]);
    } else {
        snprintf(buf, sizeof buf, "%d (below)", a->nprocs);
        fact(out, "processes", buf);
    }
    struct utsname u;
    if (uname(&u) == 0) {
        snprintf(buf, sizeof buf, "%s %s %s", u.sysname, u.release, u.machine);
        fact(out, "kernel", buf);
    }
    fact(out, "closewatch", CW_VERSION);
    snprintf(buf, sizeof buf, "%.1f s", a->opt.grace_s);
    fact(out, "grace", buf);
    cw_iso8601(buf, sizeof buf, a->now_realtime_ns);
    fact(out, "report generated", buf);
    fputc('\n', out);
    if (a->nprocs > 1)
        process_table(out, a);
}

static void summary_table(FILE *out, const struct cw_analysis *a)
{
    fputs("## Summary\n\n| kind | count |\n| --- | ---: |\n", out);
    for (int k = 0; k < CW_K_COUNT; k++)
        fprintf(out, "| %s | %d |\n", cw_kind_name((enum cw_kind)k), a->counts[k]);
    fprintf(out, "| suppressed | %d |\n\n", a->suppressed_total);
}

/* ---- one group ------------------------------------------------------------- */

static void socket_row(FILE *out, const struct cw_finding *f)
{
    char local[80], peer[80];
    cw_format_addr(&f->local, local, sizeof local);
    cw_format_addr(&f->peer, peer, sizeof peer);
    fprintf(out, "| %d | %d | ", f->proc->pid, f->fd);
    md_text(out, local);
    fputs(" | ", out);
    md_text(out, peer);
    if (f->seconds_in_close_wait > 0)
        fprintf(out, " | %.1f", f->seconds_in_close_wait);
    else
        fputs(" | -", out);
    if (f->closed_at_exit)
        fputs(", closed only at exit", out);
    fprintf(out, " | %s | %u |\n", cw_tcp_state_name((unsigned)f->tcp_state), f->recv_q);
}

static void socket_table(FILE *out, const struct cw_analysis *a, const struct cw_group *g)
{
    fputs("| pid | fd | local | peer | s in CLOSE_WAIT | state | recv-q |\n", out);
    fputs("| ---: | ---: | --- | --- | ---: | --- | ---: |\n", out);
    for (int i = 0; i < g->n && i < SOCKETS_SHOWN; i++)
        socket_row(out, &a->findings[g->members[i]]);
    if (g->n > SOCKETS_SHOWN)
        fprintf(out, "\n... and %d more.\n", g->n - SOCKETS_SHOWN);
    fputc('\n', out);
}

/* A double close has no socket left to describe (the one closed first is
 * gone, its fd number maybe reused): only which fds. */
static void fd_list(FILE *out, const struct cw_analysis *a, const struct cw_group *g)
{
    fputs("File descriptors closed twice:", out);
    for (int i = 0; i < g->n && i < SOCKETS_SHOWN; i++) {
        const struct cw_finding *f = &a->findings[g->members[i]];
        fprintf(out, "%s fd %d in pid %d", i ? "," : "", f->fd, f->proc->pid);
    }
    if (g->n > SOCKETS_SHOWN)
        fprintf(out, " and %d more", g->n - SOCKETS_SHOWN);
    fputs(".\n\n", out);
}

/* What an event's arg0 says, in words, where it says something. */
static void event_detail(char *buf, size_t len, const struct cw_timeline_entry *e)
{
    switch (e->type) {
    case CW_EV_OPEN: snprintf(buf, len, "%s", cw_origin_name((unsigned)(e->arg0 & 0xff))); break;
    case CW_EV_EOF: snprintf(buf, len, "%s", cw_eof_how_name((unsigned)e->arg0)); break;
    case CW_EV_CLOSE: snprintf(buf, len, "%s", cw_close_how_name((unsigned)e->arg0)); break;
    case CW_EV_STATE: snprintf(buf, len, "%s", cw_tcp_state_name((unsigned)e->arg0)); break;
    case CW_EV_CONNECT: snprintf(buf, len, "returned %" PRId64, e->arg0); break;
    case CW_EV_ERROR: snprintf(buf, len, "errno %" PRId64, e->arg0); break;
    default: buf[0] = '\0';
    }
}

static void timeline(FILE *out, const struct cw_finding *f)
{
    if (!f->ntimeline)
        return;
    fputs("Timeline of the first socket (seconds since the process started):\n\n", out);
    fputs("| t (s) | event | detail |\n| ---: | --- | --- |\n", out);
    for (int i = 0; i < f->ntimeline && i < CW_TIMELINE_MAX; i++) {
        const struct cw_timeline_entry *e = &f->timeline[i];
        uint64_t start = f->proc->start_mono_ns;
        double t = e->mono_ns > start ? (double)(e->mono_ns - start) / 1e9 : 0.0;
        char detail[64];
        event_detail(detail, sizeof detail, e);
        fprintf(out, "| %.3f | %s | %s |\n", t, cw_event_type_name(e->type), detail);
    }
    fputc('\n', out);
}

static void no_backtrace_note(FILE *out, const struct cw_finding *f)
{
    const struct cw_process *p = f->proc;
    if (f->origin == CW_ORIGIN_INHERITED)
        fprintf(out,
                "Inherited from the parent process (pid %d): see its report for where it "
                "was opened.\n\n",
                p->ppid);
    else if (f->kind == CW_K_UNTRACKED || !p->has_ring)
        fprintf(out, "No backtrace: %s.\n\n",
                p->has_ring ? "the socket was created behind libc's back"
                            : "this process did not run under libclosewatch.so");
}

static void group_stacks(FILE *out, struct cw_report *r, const struct cw_finding *f)
{
    const struct cw_process *p = f->proc;
    if (f->kind == CW_K_DOUBLE_CLOSE) {
        stack_block(out, r, p, f->close_stack, "Second close() at:");
        return;
    }
    if (f->kind == CW_K_EMFILE) {
        fprintf(out, "Failed with %s while %u tracked sockets were open.\n\n",
                f->err == 23 ? "ENFILE" : "EMFILE", f->sockets_open);
        stack_block(out, r, p, f->open_stack, "At:");
        return;
    }
    char label[120];
    if (cw_open_proc(f) != p)
        snprintf(label, sizeof label,
                 "Opened (%s) by pid %d and inherited, at:", cw_origin_name((unsigned)f->origin),
                 cw_open_proc(f)->pid);
    else
        snprintf(label, sizeof label, "Opened (%s) at:", cw_origin_name((unsigned)f->origin));
    if (f->open_stack)
        stack_block(out, r, cw_open_proc(f), f->open_stack, label);
    else
        no_backtrace_note(out, f);
    if (f->eof_stack)
        stack_block(out, r, p, f->eof_stack,
                    f->eof_how == CW_EOF_READ ? "EOF (a read returned 0) seen at:"
                                              : "EOF (poll/epoll HUP) seen at:");
    if (f->close_stack)
        stack_block(out, r, p, f->close_stack,
                    f->closed_at_exit ? "Closed only at exit, by the process's teardown, at:"
                                      : "Closed at:");
}

static void group_section(FILE *out, struct cw_report *r, const struct cw_group *g, int number)
{
    const struct cw_finding *first = &r->a->findings[g->members[0]];
    char title[160];
    cw_group_title(title, sizeof title, g->kind, g->n);
    fprintf(out, "## %d. %s%s\n\n", number, cw_kind_is_error(g->kind) ? "ERROR: " : "", title);
    fprintf(out, "Kind `%s`, process %d: ", cw_kind_name(g->kind), first->proc->pid);
    md_text(out, program_of(first->proc));
    fputs("\n\n", out);
    const char *eof = cw_eof_sentence(first);
    if (eof && (g->kind == CW_K_CLOSE_WAIT || g->kind == CW_K_LATE_CLOSE))
        fprintf(out, "%s\n\n", eof);
    group_stacks(out, r, first);
    if (g->kind == CW_K_DOUBLE_CLOSE)
        fd_list(out, r->a, g);
    else if (g->kind != CW_K_EMFILE)
        socket_table(out, r->a, g);
    timeline(out, first);
    fprintf(out, "**What to do:** %s\n\n", cw_kind_advice(g->kind));
}

/* ---- the end ----------------------------------------------------------------- */

static void suppressions(FILE *out, const struct cw_suppressions *s)
{
    if (!s || !s->n)
        return;
    fputs("## Suppressions\n\nFile: ", out);
    md_text(out, s->path);
    fputs("\n\n| rule | hits |\n| --- | ---: |\n", out);
    for (int i = 0; i < s->n; i++) {
        fputs("| ", out);
        md_text(out, s->v[i].kind < 0 ? "socket" : cw_kind_name((enum cw_kind)s->v[i].kind));
        fputc(':', out);
        md_text(out, s->v[i].pattern);
        fprintf(out, " | %d |\n", s->v[i].hits);
    }
    fputc('\n', out);
}

static void warnings(FILE *out, struct cw_symbolizer *sym)
{
    const char *const *w = cw_symbolizer_warnings(sym);
    if (!w || !*w)
        return;
    fputs("## Symbolizer warnings\n\n", out);
    for (; *w; w++) {
        fputs("- ", out);
        md_text(out, *w);
        fputc('\n', out);
    }
    fputc('\n', out);
}

static void no_findings(FILE *out, const struct cw_analysis *a)
{
    fprintf(out,
            "**No findings:** no socket stayed in CLOSE_WAIT longer than the grace of "
            "%.1f s, and nothing else was wrong",
            a->opt.grace_s);
    if (a->suppressed_total)
        fprintf(out, " (%d finding%s suppressed)", a->suppressed_total,
                a->suppressed_total == 1 ? " was" : "s were");
    fputs(".\n\n", out);
}

void cw_report_markdown(FILE *out, struct cw_report *r)
{
    struct cw_analysis *a = r->a;
    fputs("# closewatch report", out);
    if (a->nprocs == 1) {
        fputs(": ", out);
        md_text(out, a->procs[0]->exe[0] ? a->procs[0]->exe : a->procs[0]->cmdline);
    }
    fputs("\n\n", out);
    facts_table(out, a);
    summary_table(out, a);

    int errors = 0;
    for (int k = 0; k < CW_K_COUNT; k++)
        errors += cw_kind_is_error((enum cw_kind)k) ? a->counts[k] : 0;
    if (!errors)
        no_findings(out, a);
    struct cw_group *groups;
    int ng = cw_group_findings(a, &groups);
    for (int i = 0; i < ng; i++)
        group_section(out, r, &groups[i], i + 1);
    cw_free_groups(groups, ng);

    suppressions(out, r->sup);
    warnings(out, r->sym);
    char summary[512];
    cw_summary_line(summary, sizeof summary, a);
    fputs("---\n\n", out);
    fenced(out, summary);
}

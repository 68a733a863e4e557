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

static void frame_line(FILE *out, int i, const struct cw_vframe *f)
{
    fprintf(out, "#%-2d %-18s in ", i, f->address_text);
    code_text(out, f->function ? f->function : "??");
    if (f->file) {
        fputc(' ', out);
        code_text(out, f->file);
        if (f->line) /* a Java native method has a file, no line */
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
static void stack_block(FILE *out, const struct cw_vstack *s, const char *label)
{
    if (!s->n)
        return;
    char *body = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&body, &len);
    if (!mem)
        return;
    for (int i = 0; i < s->n; i++)
        frame_line(mem, i, &s->frames[i]);
    fclose(mem);
    fprintf(out, "%s\n\n", label);
    fenced(out, body);
    free(body);
}

/* ---- facts ----------------------------------------------------------------- */

static const char *program_of(const struct cw_vprocess *p)
{
    return p->cmdline[0] ? p->cmdline : p->exe;
}

static void fact(FILE *out, const char *name, const char *value)
{
    fprintf(out, "| %s | ", name);
    md_text(out, value);
    fputs(" |\n", out);
}

static void process_facts(FILE *out, const struct cw_vprocess *p)
{
    char buf[64];
    fact(out, "program", program_of(p));
    if (p->cmdline[0] && p->exe[0])
        fact(out, "executable", p->exe);
    snprintf(buf, sizeof buf, "%d (parent %d)", p->pid, p->ppid);
    fact(out, "pid", buf);
    fact(out, "started", p->started ? p->started : "unknown");
    snprintf(buf, sizeof buf, "%.1f s", p->duration_s);
    fact(out, "duration", buf);
    fact(out, "state", p->state);
    if (p->runtime_note)
        fact(out, "runtime frames", p->runtime_note);
    if (p->record_note)
        fact(out, "recording", p->record_note);
}

/* More than one process: one row each instead of one fact each. */
static void process_table(FILE *out, const struct cw_view *v)
{
    fputs("| pid | program | started | duration | state | sockets seen |\n", out);
    fputs("| ---: | --- | --- | ---: | --- | ---: |\n", out);
    for (int i = 0; i < v->nprocs; i++) {
        const struct cw_vprocess *p = &v->procs[i];
        fprintf(out, "| %d | ", p->pid);
        md_text(out, program_of(p));
        fprintf(out, " | %s | %.1f s | %s | %d |\n", p->started ? p->started : "unknown",
                p->duration_s, p->state, p->sockets_seen);
    }
    fputc('\n', out);
}

static void facts_table(FILE *out, const struct cw_view *v)
{
    char buf[320];
    fputs("| fact | value |\n| --- | --- |\n", out);
    if (v->nprocs == 1) {
        process_facts(out, &v->procs[0]);
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
    fputc('\n', out);
    if (v->nprocs > 1)
        process_table(out, v);
}

static void summary_table(FILE *out, const struct cw_view *v)
{
    fputs("## Summary\n\n| kind | count |\n| --- | ---: |\n", out);
    for (int k = 0; k < CW_K_COUNT; k++)
        fprintf(out, "| %s | %d |\n", cw_kind_name((enum cw_kind)k), v->counts[k]);
    fprintf(out, "| suppressed | %d |\n\n", v->suppressed);
}

/* ---- one group ------------------------------------------------------------- */

static void socket_row(FILE *out, const struct cw_vfinding *f)
{
    fprintf(out, "| %d | %d | ", f->proc->pid, f->fd);
    md_text(out, f->local[0] ? f->local : "-");
    fputs(" | ", out);
    md_text(out, f->peer[0] ? f->peer : "-");
    if (f->seconds_in_close_wait > 0)
        fprintf(out, " | %.1f", f->seconds_in_close_wait);
    else
        fputs(" | -", out);
    if (f->closed_at_exit)
        fputs(", closed only at exit", out);
    fprintf(out, " | %s | %u |\n", f->tcp_state, f->recv_q);
}

static void socket_table(FILE *out, const struct cw_vgroup *g)
{
    fputs("| pid | fd | local | peer | s in CLOSE_WAIT | state | recv-q |\n", out);
    fputs("| ---: | ---: | --- | --- | ---: | --- | ---: |\n", out);
    for (int i = 0; i < g->n && i < SOCKETS_SHOWN; i++)
        socket_row(out, &g->first[i]);
    if (g->n > SOCKETS_SHOWN)
        fprintf(out, "\n... and %d more.\n", g->n - SOCKETS_SHOWN);
    fputc('\n', out);
}

/* A double close has no socket left to describe (the one closed first is
 * gone, its fd number maybe reused): only which fds. */
static void fd_list(FILE *out, const struct cw_vgroup *g)
{
    fputs("File descriptors closed twice:", out);
    for (int i = 0; i < g->n && i < SOCKETS_SHOWN; i++) {
        fprintf(out, "%s fd %d in pid %d", i ? "," : "", g->first[i].fd, g->first[i].proc->pid);
    }
    if (g->n > SOCKETS_SHOWN)
        fprintf(out, " and %d more", g->n - SOCKETS_SHOWN);
    fputs(".\n\n", out);
}

static void timeline(FILE *out, const struct cw_vfinding *f)
{
    if (!f->ntimeline)
        return;
    fputs("Timeline of the first socket (seconds since the process started):\n\n", out);
    fputs("| t (s) | event | detail |\n| ---: | --- | --- |\n", out);
    for (int i = 0; i < f->ntimeline; i++)
        fprintf(out, "| %.3f | %s | %s |\n", f->timeline[i].t, f->timeline[i].event,
                f->timeline[i].detail);
    fputc('\n', out);
}

/* A sentence of the view's, capitalized, as a paragraph. */
static void paragraph(FILE *out, const char *s)
{
    fprintf(out, "%c%s.\n\n", s[0] >= 'a' && s[0] <= 'z' ? s[0] - 'a' + 'A' : s[0], s + 1);
}

static void group_stacks(FILE *out, const struct cw_vfinding *f)
{
    if (f->kind->kind == CW_K_DOUBLE_CLOSE) {
        stack_block(out, &f->close, "Second close() at:");
        return;
    }
    if (f->kind->kind == CW_K_EMFILE) {
        fprintf(out, "Failed with %s while %u tracked sockets were open.\n\n", f->errno_name,
                f->sockets_open);
        stack_block(out, &f->open, "At:");
        return;
    }
    char label[120];
    snprintf(label, sizeof label, "%s", f->open_label);
    label[0] = (char)(label[0] >= 'a' && label[0] <= 'z' ? label[0] - 'a' + 'A' : label[0]);
    if (f->open.n)
        stack_block(out, &f->open, label);
    else if (f->no_stack_note[0])
        paragraph(out, f->no_stack_note);
    stack_block(out, &f->request, "Dialed for the request made at:");
    if (f->request_note[0])
        paragraph(out, f->request_note);
    stack_block(out, &f->eof_stack,
                f->eof_by_read ? "EOF (a read returned 0) seen at:"
                               : "EOF (poll/epoll HUP) seen at:");
    stack_block(out, &f->close,
                f->closed_at_exit ? "Closed only at exit, by the process's teardown, at:"
                                  : "Closed at:");
}

static void group_section(FILE *out, const struct cw_vgroup *g, int number)
{
    const struct cw_vfinding *first = &g->first[0];
    enum cw_kind kind = g->kind->kind;
    fprintf(out, "## %d. %s%s", number, g->kind->is_error ? "ERROR: " : "", g->title);
    const struct cw_vframe *at = first->placed->at;
    if (at && at->file) {
        fputs(" at ", out);
        md_text(out, at->file);
        fprintf(out, ":%d", at->line);
    }
    fputs("\n\n", out);
    fprintf(out, "Kind `%s`, process %d: ", g->kind->name, first->proc->pid);
    md_text(out, program_of(first->proc));
    fputs("\n\n", out);
    if (first->eof_sentence && (kind == CW_K_CLOSE_WAIT || kind == CW_K_LATE_CLOSE))
        fprintf(out, "%s\n\n", first->eof_sentence);
    group_stacks(out, first);
    if (kind == CW_K_DOUBLE_CLOSE)
        fd_list(out, g);
    else if (kind != CW_K_EMFILE)
        socket_table(out, g);
    timeline(out, first);
    fprintf(out, "**What to do:** %s\n\n", g->kind->advice);
}

/* ---- the end ----------------------------------------------------------------- */

static void suppressions(FILE *out, const struct cw_view *v)
{
    if (!v->nrules)
        return;
    fputs("## Suppressions\n\nFile: ", out);
    md_text(out, v->suppressions_path);
    fputs("\n\n| rule | hits |\n| --- | ---: |\n", out);
    for (int i = 0; i < v->nrules; i++) {
        fputs("| ", out);
        md_text(out, v->rules[i].kind);
        fputc(':', out);
        md_text(out, v->rules[i].pattern);
        fprintf(out, " | %d |\n", v->rules[i].hits);
    }
    fputc('\n', out);
}

static void warnings(FILE *out, const struct cw_view *v)
{
    if (!v->warnings || !v->warnings[0])
        return;
    fputs("## Symbolizer warnings\n\n", out);
    for (char **w = v->warnings; *w; w++) {
        fputs("- ", out);
        md_text(out, *w);
        fputc('\n', out);
    }
    fputc('\n', out);
}

static void no_findings(FILE *out, const struct cw_view *v)
{
    fprintf(out,
            "**No findings:** no socket stayed in CLOSE_WAIT longer than the grace of "
            "%.1f s, and nothing else was wrong",
            v->grace_s);
    if (v->suppressed)
        fprintf(out, " (%d finding%s suppressed)", v->suppressed,
                v->suppressed == 1 ? " was" : "s were");
    fputs(".\n\n", out);
}

void cw_report_markdown(FILE *out, const struct cw_view *v)
{
    fputs("# closewatch report", out);
    if (v->nprocs == 1) {
        fputs(": ", out);
        md_text(out, v->procs[0].exe[0] ? v->procs[0].exe : v->procs[0].cmdline);
    }
    fputs("\n\n", out);
    facts_table(out, v);
    summary_table(out, v);
    if (!v->errors)
        no_findings(out, v);
    for (int i = 0; i < v->ngroups; i++)
        group_section(out, &v->groups[i], i + 1);
    suppressions(out, v);
    warnings(out, v);
    fputs("---\n\n", out);
    fenced(out, v->summary);
}

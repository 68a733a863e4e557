/*
 * report_text.c - the terminal report, in the manner of LeakSanitizer:
 * findings grouped by the stack that opened them, worst group first, each
 * with its stacks, sockets and ages, and a SUMMARY line last.
 */
#include <inttypes.h>
#include <string.h>

#include "report.h"

#define SOCKETS_SHOWN 5

/* The program's command line on one line: a `-c` script's newlines and
 * other control characters would break the report's layout. */
static void print_command(FILE *out, const struct cw_vprocess *p)
{
    for (const char *c = p->cmdline[0] ? p->cmdline : p->exe; *c; c++)
        fputc((unsigned char)*c < 0x20 || *c == 0x7f ? ' ' : *c, out);
}

static void print_stack(FILE *out, const struct cw_vstack *s, const char *label)
{
    if (!s->n)
        return;
    fprintf(out, "  %s\n", label);
    for (int i = 0; i < s->n; i++) {
        const struct cw_vframe *f = &s->frames[i];
        fprintf(out, "    #%-2d %-18s in %s", i, f->address_text, f->function ? f->function : "??");
        if (f->file && f->line)
            fprintf(out, " %s:%d", f->file, f->line);
        else if (f->file) /* a Java native method has a file, no line */
            fprintf(out, " %s", f->file);
        else if (f->module)
            fprintf(out, " (%s)", f->module);
        if (f->inlined)
            fputs(" (inlined)", out);
        fputc('\n', out);
    }
    if (s->folded)
        fprintf(out, "    (%d frames of the runtime's internals folded: --frames=all shows them)\n",
                s->folded);
}

static void print_socket(FILE *out, const struct cw_vfinding *f)
{
    fprintf(out, "    pid %d fd %d  %s <-> %s", f->proc->pid, f->fd, f->local[0] ? f->local : "-",
            f->peer[0] ? f->peer : "-");
    switch (f->kind->kind) {
    case CW_K_CLOSE_WAIT:
    case CW_K_UNTRACKED:
        if (f->seconds_in_close_wait > 0)
            fprintf(out, "  in CLOSE_WAIT for %.1f s", f->seconds_in_close_wait);
        else
            fputs("  in CLOSE_WAIT", out);
        if (f->recv_q)
            fprintf(out, ", %u unread bytes", f->recv_q);
        if (f->closed_at_exit)
            fputs(", closed only at exit", out);
        break;
    case CW_K_LATE_CLOSE:
        fprintf(out, "  closed after %.1f s in CLOSE_WAIT", f->seconds_in_close_wait);
        break;
    case CW_K_EOF_SPIN: fprintf(out, "  read() returned 0 %u times", f->eof_count); break;
    default: fprintf(out, "  open for %.1f s", f->age_seconds);
    }
    fputc('\n', out);
}

static void print_open(FILE *out, const struct cw_vfinding *first)
{
    if (first->open.n)
        print_stack(out, &first->open, first->open_label);
    else if (first->no_stack_note[0])
        fprintf(out, "  %s\n", first->no_stack_note);
    print_stack(out, &first->request, "dialed for the request made at:");
    if (first->request_note[0])
        fprintf(out, "  note: %s\n", first->request_note);
}

static void print_place(FILE *out, const char *what, const struct cw_vframe *at)
{
    fprintf(out, "%s %s:%d", what, at->file, at->line);
    if (at->function)
        fprintf(out, " (%s)", at->function);
}

/* The program's own line first, before any stack: where it was opened (or
 * closed twice) and where its EOF was seen. */
static void print_where(FILE *out, const struct cw_vfinding *f)
{
    const struct cw_vframe *at = f->placed->at, *eof = f->eof_stack.at;
    if (!at || !at->file)
        return;
    fputs("  where: ", out);
    print_place(out,
                f->kind->placed_by == CW_PLACE_CLOSE ? "closed again at"
                : f->placed == &f->request           ? "dialed for the request at"
                                                     : "opened at",
                at);
    if (eof && eof->file && f->kind->placed_by != CW_PLACE_CLOSE)
        print_place(out, ", EOF seen at", eof);
    fputc('\n', out);
    /* An event loop's accept says nothing of which server: its listener does. */
    const struct cw_vframe *l = f->listener.at;
    if (l && l->file && f->kind->placed_by != CW_PLACE_CLOSE) {
        fprintf(out, "  listener: fd %d, ", f->listener_fd);
        print_place(out, "opened at", l);
        fputc('\n', out);
    }
}

static void print_group(FILE *out, const struct cw_vgroup *g)
{
    const struct cw_vfinding *first = &g->first[0];
    enum cw_kind kind = g->kind->kind;
    fprintf(out, "\n=================================================================\n");
    fprintf(out, "closewatch: %s%s\n", g->kind->is_error ? "ERROR: " : "", g->title);
    fprintf(out, "  process: pid %d ", first->proc->pid);
    print_command(out, first->proc);
    fputc('\n', out);
    print_where(out, first);
    if (first->eof_sentence && kind == CW_K_CLOSE_WAIT)
        fprintf(out, "  %s\n", first->eof_sentence);

    if (kind == CW_K_DOUBLE_CLOSE) {
        print_stack(out, &first->close, "second close() at:");
    } else if (kind == CW_K_EMFILE) {
        fprintf(out, "  failed with %s while %u tracked sockets were open, at:\n",
                first->errno_name, first->sockets_open);
        print_stack(out, &first->open, "");
    } else {
        print_open(out, first);
        print_stack(out, &first->eof_stack,
                    first->eof_by_read ? "EOF (a read returned 0) seen at:"
                                       : "EOF (poll/epoll HUP) seen at:");
        if (kind == CW_K_LATE_CLOSE)
            print_stack(out, &first->close, "closed at:");
        else if (first->closed_at_exit)
            print_stack(out, &first->close, "closed only at exit, by the process's teardown, at:");
    }
    if (kind != CW_K_EMFILE && kind != CW_K_DOUBLE_CLOSE) {
        fprintf(out, "  sockets:\n");
        for (int i = 0; i < g->n && i < SOCKETS_SHOWN; i++)
            print_socket(out, &g->first[i]);
        if (g->n > SOCKETS_SHOWN)
            fprintf(out, "    ... and %d more\n", g->n - SOCKETS_SHOWN);
    }
    fprintf(out, "  %s\n", g->kind->advice);
}

void cw_report_text(FILE *out, const struct cw_view *v)
{
    fprintf(out, "closewatch %s: %d process%s, grace %.1f s\n", CW_VERSION, v->nprocs,
            v->nprocs == 1 ? "" : "es", v->grace_s);
    for (int i = 0; i < v->nprocs; i++) {
        const struct cw_vprocess *p = &v->procs[i];
        /* Shells, shims and compilers of a traced `make check` touch no
         * socket: count them, do not list them. */
        if (!p->sockets_seen && p->has_ring)
            continue;
        fprintf(out, "  pid %d ", p->pid);
        print_command(out, p);
        fprintf(out, ": %s, %d socket%s seen, %d open", p->state, p->sockets_seen,
                p->sockets_seen == 1 ? "" : "s", p->sockets_open);
        if (p->overwritten || p->torn || p->dropped)
            fprintf(out,
                    " (history: %" PRIu64 " events overwritten, %" PRIu64 " torn, %" PRIu64
                    " dropped)",
                    p->overwritten, p->torn, p->dropped);
        fputc('\n', out);
        if (p->runtime_note)
            fprintf(out, "    runtime frames not recorded: %s\n", p->runtime_note);
        if (p->record_note)
            fprintf(out, "    %s\n", p->record_note);
    }
    if (v->quiet_procs)
        fprintf(out, "  (and %d process%s that used no socket)\n", v->quiet_procs,
                v->quiet_procs == 1 ? "" : "es");
    if (!v->nprocs)
        fputs("  no process left a ring: none used a socket through libc (or none could be "
              "preloaded)\n",
              out);
    for (int i = 0; i < v->ngroups; i++)
        print_group(out, &v->groups[i]);

    if (v->nrules) {
        fprintf(out, "\nsuppressions (%s):\n", v->suppressions_path);
        for (int i = 0; i < v->nrules; i++)
            fprintf(out, "  %4d  %s:%s\n", v->rules[i].hits, v->rules[i].kind, v->rules[i].pattern);
    }
    for (char **w = v->warnings; w && *w; w++)
        fprintf(out, "warning: %s\n", *w);
    fprintf(out, "\n%s\n", v->summary);
}

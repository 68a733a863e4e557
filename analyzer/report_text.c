/*
 * report_text.c - the terminal report, in the manner of LeakSanitizer:
 * findings grouped by the stack that opened them, worst group first, each
 * with its stacks, sockets and ages, and a SUMMARY line last.
 */
#include <inttypes.h>
#include <string.h>

#include "dump.h"
#include "report.h"

#define SOCKETS_SHOWN 5

/* The program's command line on one line: a `-c` script's newlines and
 * other control characters would break the report's layout. */
static void print_command(FILE *out, const struct cw_process *p)
{
    for (const char *c = p->cmdline[0] ? p->cmdline : p->exe; *c; c++)
        fputc((unsigned char)*c < 0x20 || *c == 0x7f ? ' ' : *c, out);
}

static void print_frames(FILE *out, const struct cw_sym_frame *f, int n)
{
    for (int i = 0; i < n; i++) {
        fprintf(out, "    #%-2d 0x%016" PRIx64 " in %s", i, f[i].address,
                f[i].function ? f[i].function : "??");
        if (f[i].file)
            fprintf(out, " %s:%d", f[i].file, f[i].line);
        else if (f[i].module)
            fprintf(out, " (%s)", f[i].module);
        if (f[i].inlined)
            fputs(" (inlined)", out);
        fputc('\n', out);
    }
}

static void print_stack(FILE *out, struct cw_report *r, const struct cw_process *p, uint32_t id,
                        const char *label)
{
    struct cw_sym_frame f[CW_FRAMES_MAX];
    int n = cw_stack_frames(r->sym, p, id, f, CW_FRAMES_MAX);
    if (!n)
        return;
    fprintf(out, "  %s\n", label);
    print_frames(out, f, n);
}

static void print_socket(FILE *out, const struct cw_finding *f)
{
    char local[80], peer[80];
    cw_format_addr(&f->local, local, sizeof local);
    cw_format_addr(&f->peer, peer, sizeof peer);
    fprintf(out, "    pid %d fd %d  %s <-> %s", f->proc->pid, f->fd, local, peer);
    switch (f->kind) {
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

static void print_group(FILE *out, struct cw_report *r, const struct cw_group *g)
{
    const struct cw_finding *first = &r->a->findings[g->members[0]];
    char title[160];
    cw_group_title(title, sizeof title, g->kind, g->n);
    fprintf(out, "\n=================================================================\n");
    fprintf(out, "closewatch: %s%s\n", cw_kind_is_error(g->kind) ? "ERROR: " : "", title);
    fprintf(out, "  process: pid %d ", first->proc->pid);
    print_command(out, first->proc);
    fputc('\n', out);
    const char *eof = cw_eof_sentence(first);
    if (eof && g->kind == CW_K_CLOSE_WAIT)
        fprintf(out, "  %s\n", eof);

    const struct cw_process *p = first->proc;
    if (g->kind == CW_K_DOUBLE_CLOSE) {
        print_stack(out, r, p, first->close_stack, "second close() at:");
    } else if (g->kind == CW_K_EMFILE) {
        fprintf(out, "  failed with %s while %u tracked sockets were open, at:\n",
                first->err == 23 ? "ENFILE" : "EMFILE", first->sockets_open);
        print_stack(out, r, p, first->open_stack, "");
    } else {
        char label[120];
        if (first->origin == CW_ORIGIN_INHERITED && cw_open_proc(first) == p)
            snprintf(label, sizeof label,
                     "opened by the parent process (pid %d), inherited, at:", p->ppid);
        else if (cw_open_proc(first) != p)
            snprintf(label, sizeof label, "opened (%s) by pid %d and inherited, at:",
                     cw_origin_name((unsigned)first->origin), cw_open_proc(first)->pid);
        else
            snprintf(label, sizeof label,
                     "opened (%s) at:", cw_origin_name((unsigned)first->origin));
        if (first->open_stack)
            print_stack(out, r, cw_open_proc(first), first->open_stack, label);
        else if (first->origin == CW_ORIGIN_INHERITED)
            fprintf(out,
                    "  inherited from the parent process (pid %d): see its report for where "
                    "it was opened\n",
                    p->ppid);
        else if (g->kind == CW_K_UNTRACKED || !p->has_ring)
            fprintf(out, "  no backtrace: %s\n",
                    p->has_ring ? "the socket was created behind libc's back"
                                : "this process did not run under libclosewatch.so");
        if (first->eof_stack)
            print_stack(out, r, p, first->eof_stack,
                        first->eof_how == CW_EOF_READ ? "EOF (a read returned 0) seen at:"
                                                      : "EOF (poll/epoll HUP) seen at:");
        if (g->kind == CW_K_LATE_CLOSE && first->close_stack)
            print_stack(out, r, p, first->close_stack, "closed at:");
        else if (first->closed_at_exit && first->close_stack)
            print_stack(out, r, p, first->close_stack,
                        "closed only at exit, by the process's teardown, at:");
    }
    if (g->kind != CW_K_EMFILE && g->kind != CW_K_DOUBLE_CLOSE) {
        fprintf(out, "  sockets:\n");
        for (int i = 0; i < g->n && i < SOCKETS_SHOWN; i++)
            print_socket(out, &r->a->findings[g->members[i]]);
        if (g->n > SOCKETS_SHOWN)
            fprintf(out, "    ... and %d more\n", g->n - SOCKETS_SHOWN);
    }
    fprintf(out, "  %s\n", cw_kind_advice(g->kind));
}

void cw_report_text(FILE *out, struct cw_report *r)
{
    struct cw_analysis *a = r->a;
    fprintf(out, "closewatch %s: %d process%s, grace %.1f s\n", CW_VERSION, a->nprocs,
            a->nprocs == 1 ? "" : "es", a->opt.grace_s);
    int quiet = 0;
    for (int i = 0; i < a->nprocs; i++) {
        const struct cw_process *p = a->procs[i];
        /* Shells, shims and compilers of a traced `make check` touch no
         * socket: count them, do not list them. */
        if (!p->sockets_seen && p->has_ring) {
            quiet++;
            continue;
        }
        fprintf(out, "  pid %d ", p->pid);
        print_command(out, p);
        fprintf(out, ": %s, %d socket%s seen, %d open", cw_end_name(p->end), p->sockets_seen,
                p->sockets_seen == 1 ? "" : "s", p->sockets_open);
        if (p->overwritten || p->torn || p->dropped)
            fprintf(out,
                    " (history: %" PRIu64 " events overwritten, %" PRIu64 " torn, %" PRIu64
                    " dropped)",
                    p->overwritten, p->torn, p->dropped);
        fputc('\n', out);
    }
    if (quiet)
        fprintf(out, "  (and %d process%s that used no socket)\n", quiet, quiet == 1 ? "" : "es");
    if (!a->nprocs)
        fputs("  no process left a ring: none used a socket through libc (or none could be "
              "preloaded)\n",
              out);
    struct cw_group *groups;
    int ng = cw_group_findings(a, &groups);
    for (int i = 0; i < ng; i++)
        print_group(out, r, &groups[i]);
    cw_free_groups(groups, ng);

    if (r->sup && r->sup->n) {
        fprintf(out, "\nsuppressions (%s):\n", r->sup->path);
        for (int i = 0; i < r->sup->n; i++)
            fprintf(out, "  %4d  %s:%s\n", r->sup->v[i].hits,
                    r->sup->v[i].kind < 0 ? "socket"
                                          : cw_kind_name((enum cw_kind)r->sup->v[i].kind),
                    r->sup->v[i].pattern);
    }
    for (const char *const *w = cw_symbolizer_warnings(r->sym); w && *w; w++)
        fprintf(out, "warning: %s\n", *w);
    char summary[512];
    cw_summary_line(summary, sizeof summary, a);
    fprintf(out, "\n%s\n", summary);
}

/*
 * report_common.c - what every report format shares: stacks resolved to
 * frames without closewatch's own, titles, advice, the summary line, and
 * JSON string output (JSON and SARIF).
 */
#include "report.h"

#include <string.h>

int cw_stack_frames(struct cw_symbolizer *sym, const struct cw_process *p, uint32_t id,
                    struct cw_sym_frame *out, int max)
{
    if (!id || !p->has_ring)
        return 0;
    uint64_t pcs[CW_MAX_DEPTH];
    int n = cw_ring_stack(&p->ring, id, pcs, CW_MAX_DEPTH), used = 0;
    for (int i = 0; i < n && used < max; i++) {
        int got = cw_symbolize(sym, p->modules, p->nmodules, pcs[i], 1, out + used, max - used);
        if (got > 0 && out[used + got - 1].module &&
            cw_sym_is_own_module(out[used + got - 1].module))
            continue;
        used += got;
    }
    return used;
}

/* System libraries (libc's close() wrapper, with libc6-dbg installed) have
 * source lines too, but the line to fix is in the program's code. */
static int is_system_module(const char *m)
{
    return m && (!strncmp(m, "/lib/", 5) || !strncmp(m, "/lib64/", 7) ||
                 !strncmp(m, "/usr/lib/", 9) || !strncmp(m, "/usr/lib64/", 11));
}

const struct cw_sym_frame *cw_first_source_frame(const struct cw_sym_frame *f, int n)
{
    for (int i = 0; i < n; i++)
        if (f[i].file && f[i].line && !is_system_module(f[i].module))
            return &f[i];
    for (int i = 0; i < n; i++)
        if (f[i].file && f[i].line)
            return &f[i];
    return n ? &f[0] : NULL;
}

void cw_group_title(char *buf, size_t len, enum cw_kind kind, int n)
{
    const char *s = n == 1 ? "" : "s";
    switch (kind) {
    case CW_K_CLOSE_WAIT:
        snprintf(buf, len, "%d socket%s in CLOSE_WAIT without close()", n, s);
        break;
    case CW_K_LATE_CLOSE:
        snprintf(buf, len, "%d socket%s closed late, after sitting in CLOSE_WAIT", n, s);
        break;
    case CW_K_EOF_SPIN:
        snprintf(buf, len, "%d socket%s where read() returned 0 again and again", n, s);
        break;
    case CW_K_DOUBLE_CLOSE: snprintf(buf, len, "%d double close%s", n, n == 1 ? "" : "s"); break;
    case CW_K_EMFILE:
        snprintf(buf, len, "%d failure%s to get a socket: out of file descriptors", n, s);
        break;
    case CW_K_UNTRACKED:
        snprintf(buf, len, "%d socket%s in CLOSE_WAIT that closewatch did not see being opened", n,
                 s);
        break;
    default: snprintf(buf, len, "%d socket%s still open at exit", n, s); break;
    }
}

const char *cw_kind_advice(enum cw_kind kind)
{
    switch (kind) {
    case CW_K_CLOSE_WAIT:
        return "The peer closed the connection, but this process never called close(): every such "
               "socket holds an fd until the process runs out of them. Close the socket on the "
               "path "
               "that sees EOF (read()==0), on error paths, and for idle pooled connections.";
    case CW_K_LATE_CLOSE:
        return "The socket was closed eventually, but only long after the peer closed it: look for "
               "an EOF handled late, or idle connections reaped by a timer.";
    case CW_K_EOF_SPIN:
        return "read() returned 0 (end of file) repeatedly on the same socket: the loop does not "
               "treat 0 as 'peer closed' and spins, burning CPU.";
    case CW_K_DOUBLE_CLOSE:
        return "close() was called on an fd that was already closed: if another thread reused the "
               "number in between, the second close destroys someone else's fd.";
    case CW_K_EMFILE:
        return "accept() or socket() failed with EMFILE/ENFILE: the process (or system) ran out of "
               "file descriptors, usually because of the leaks above.";
    case CW_K_UNTRACKED:
        return "The kernel shows this socket in CLOSE_WAIT, but it was created without going "
               "through libc (Go runtime, static binary, io_uring, raw syscalls), so there is no "
               "backtrace: only the kernel's view.";
    default: return "Still open when the process ended (information only).";
    }
}

const char *cw_eof_sentence(const struct cw_finding *f)
{
    switch (f->eof) {
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

void cw_summary_line(char *buf, size_t len, const struct cw_analysis *a)
{
    int errors = 0;
    for (int k = 0; k < CW_K_COUNT; k++)
        if (cw_kind_is_error((enum cw_kind)k))
            errors += a->counts[k];
    size_t n = 0;
    if (!errors)
        n = (size_t)snprintf(buf, len, "SUMMARY: closewatch: no leaked sockets in %d process%s",
                             a->nprocs, a->nprocs == 1 ? "" : "es");
    else
        n = (size_t)snprintf(buf, len, "SUMMARY: closewatch: %d finding%s in %d process%s (",
                             errors, errors == 1 ? "" : "s", a->nprocs, a->nprocs == 1 ? "" : "es");
    if (errors) {
        const char *sep = "";
        for (int k = 0; k < CW_K_COUNT && n < len; k++) {
            if (!a->counts[k] || !cw_kind_is_error((enum cw_kind)k))
                continue;
            n += (size_t)snprintf(buf + n, len - n, "%s%s: %d", sep, cw_kind_name((enum cw_kind)k),
                                  a->counts[k]);
            sep = ", ";
        }
        if (n < len)
            n += (size_t)snprintf(buf + n, len - n, ")");
    }
    if (a->suppressed_total && n < len)
        n += (size_t)snprintf(buf + n, len - n, "; %d suppressed", a->suppressed_total);
    /* Not findings yet, but not nothing either: the user may be watching
     * them in `ss` right now. */
    if (a->young_close_wait && n < len)
        snprintf(buf + n, len - n, "; %d socket%s in CLOSE_WAIT for less than the grace of %g s",
                 a->young_close_wait, a->young_close_wait == 1 ? "" : "s", a->opt.grace_s);
}

/*
 * report_sarif.c - the SARIF 2.1.0 report, for code-scanning tools: one
 * rule per finding kind, one result per finding placed at the source line
 * that opened the socket (the second close() for a double close), the EOF
 * and close sites as related locations, the whole open stack as a SARIF
 * stack, and a fingerprint that stays the same across runs and ASLR.
 * Suppressed findings are kept, marked as externally suppressed, so that
 * tools show them as dismissed rather than fixed.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "dump.h"
#include "json.h"
#include "report.h"

#define SARIF_SCHEMA "https://json.schemastore.org/sarif-2.1.0.json"
#define INFO_URI     "https://github.com/closewatch/closewatch"

/* ---- rules ----------------------------------------------------------------- */

static const char *short_description(enum cw_kind k)
{
    switch (k) {
    case CW_K_CLOSE_WAIT: return "Socket left in CLOSE_WAIT without close()";
    case CW_K_LATE_CLOSE: return "Socket closed long after the peer closed it";
    case CW_K_EOF_SPIN: return "read() returns 0 again and again on a socket";
    case CW_K_DOUBLE_CLOSE: return "close() of an already closed file descriptor";
    case CW_K_EMFILE: return "Out of file descriptors when creating a socket";
    case CW_K_UNTRACKED: return "Socket in CLOSE_WAIT created outside libc";
    default: return "Socket still open when the process ended";
    }
}

static const char *level_of(enum cw_kind k)
{
    return cw_kind_is_error(k) ? "error" : "note";
}

static void rules_json(FILE *out)
{
    for (int k = 0; k < CW_K_COUNT; k++) {
        enum cw_kind kind = (enum cw_kind)k;
        fputs(k ? ",{\"id\":" : "{\"id\":", out);
        cw_json_str(out, cw_kind_name(kind));
        fputs(",\"shortDescription\":{\"text\":", out);
        cw_json_str(out, short_description(kind));
        fputs("},\"fullDescription\":{\"text\":", out);
        cw_json_str(out, cw_kind_advice(kind));
        fputs("},\"defaultConfiguration\":{\"level\":", out);
        cw_json_str(out, level_of(kind));
        fputs("}}", out);
    }
}

/* ---- locations ------------------------------------------------------------- */

/* RFC 3986 keeps these unescaped in a path; everything else (space, |, ",
 * \, :, control and non-ASCII bytes) is percent-encoded so the URI is valid. */
static int uri_safe(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("-._~/!$&'()*+,;=@", c);
}

/* Absolute paths become file:// URIs; relative ones stay relative so that
 * tools resolve them against the checkout. */
static void file_uri(char *buf, size_t len, const char *path)
{
    size_t n = (size_t)snprintf(buf, len, "%s", path[0] == '/' ? "file://" : "");
    for (const unsigned char *p = (const unsigned char *)path; *p && n + 4 < len; p++)
        n += (size_t)(uri_safe(*p) ? snprintf(buf + n, len - n, "%c", *p)
                                   : snprintf(buf + n, len - n, "%%%02X", *p));
}

/* Where f is in a file (if known) and, for stack frames, at which runtime
 * address: SARIF wants a physical location to name at least one of them. */
static void physical_location(FILE *out, const struct cw_sym_frame *f, int with_address)
{
    fputs("\"physicalLocation\":{", out);
    if (f->file) {
        char uri[3 * 4096 + 16];
        file_uri(uri, sizeof uri, f->file);
        fputs("\"artifactLocation\":{\"uri\":", out);
        cw_json_str(out, uri);
        fputc('}', out);
        if (f->line > 0) {
            fprintf(out, ",\"region\":{\"startLine\":%d", f->line);
            if (f->column > 0)
                fprintf(out, ",\"startColumn\":%d", f->column);
            fputc('}', out);
        }
    }
    if (with_address)
        fprintf(out, "%s\"address\":{\"absoluteAddress\":%" PRIu64 "}", f->file ? "," : "",
                f->address);
    fputc('}', out);
}

/* The body of a SARIF location object (without braces) for frame f: a file
 * and line where known, and the function (or module) as a logical location.
 * Returns 0 having written nothing when there is nothing to say. */
static int location_body(FILE *out, const struct cw_sym_frame *f, int with_address)
{
    int any = 0;
    if (f->file || with_address) {
        physical_location(out, f, with_address);
        any = 1;
    }
    const char *name = f->function ? f->function : f->module;
    if (name) {
        fprintf(out, "%s\"logicalLocations\":[{\"fullyQualifiedName\":", any ? "," : "");
        cw_json_str(out, name);
        fprintf(out, ",\"kind\":\"%s\"}]", f->function ? "function" : "module");
        any = 1;
    }
    return any;
}

/* The process as a logical location: where a finding without frames is. */
static void process_location(FILE *out, const struct cw_process *p)
{
    fputs("{\"logicalLocations\":[{\"fullyQualifiedName\":", out);
    cw_json_str(out, p->exe[0] ? p->exe : p->cmdline);
    fputs(",\"kind\":\"module\"}]}", out);
}

/* ---- stacks and fingerprints --------------------------------------------- */

struct stack {
    struct cw_sym_frame f[CW_FRAMES_MAX];
    int n;
};

/* The stack a finding is placed by: the second close() for a double close. */
static uint32_t primary_stack(const struct cw_finding *f)
{
    return f->kind == CW_K_DOUBLE_CLOSE ? f->close_stack : f->open_stack;
}

/* The ring that stack belongs to (an inherited socket's open stack is the
 * opener's). */
static const struct cw_process *primary_proc(const struct cw_finding *f)
{
    return f->kind == CW_K_DOUBLE_CLOSE ? f->proc : cw_open_proc(f);
}

static void stack_json(FILE *out, const struct stack *s, const char *message)
{
    fputs("{\"message\":{\"text\":", out);
    cw_json_str(out, message);
    fputs("},\"frames\":[", out);
    for (int i = 0; i < s->n; i++) {
        const struct cw_sym_frame *f = &s->f[i];
        fputs(i ? ",{\"location\":{" : "{\"location\":{", out);
        location_body(out, f, 1);
        if (f->inlined)
            fputs(",\"properties\":{\"inlined\":true}", out);
        fputc('}', out);
        if (f->module) {
            fputs(",\"module\":", out);
            cw_json_str(out, f->module);
        }
        fputc('}', out);
    }
    fputs("]}", out);
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return (h ^ '\n') * 0x100000001b3ull;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* Kind and function names only: addresses move with ASLR and rebuilds, line
 * numbers with every edit above them. Frames without a name count by their
 * module's basename; a finding with no frames by its program's. */
static uint64_t fingerprint(const struct cw_finding *f, const struct stack *s)
{
    uint64_t h = fnv1a(0xcbf29ce484222325ull, cw_kind_name(f->kind));
    for (int i = 0; i < s->n; i++)
        h = fnv1a(h, s->f[i].function ? s->f[i].function
                     : s->f[i].module ? base_name(s->f[i].module)
                                      : "?");
    if (!s->n)
        h = fnv1a(h, base_name(f->proc->exe));
    return h;
}

/* ---- results --------------------------------------------------------------- */

static void message_text(char *buf, size_t len, const struct cw_finding *f)
{
    char local[80], peer[80], sock[200];
    cw_format_addr(&f->local, local, sizeof local);
    cw_format_addr(&f->peer, peer, sizeof peer);
    snprintf(sock, sizeof sock, "socket fd %d (%s <-> %s)", f->fd, local, peer);
    double s = f->seconds_in_close_wait;
    switch (f->kind) {
    case CW_K_CLOSE_WAIT:
        snprintf(buf, len, "%s in CLOSE_WAIT for %.1f s without close()%s; eof: %s", sock, s,
                 f->closed_at_exit ? " (closed only at exit, by the process's teardown)" : "",
                 cw_eof_name(f->eof));
        break;
    case CW_K_UNTRACKED:
        snprintf(buf, len, "%s in CLOSE_WAIT for %.1f s, created outside libc: no backtrace", sock,
                 s);
        break;
    case CW_K_LATE_CLOSE:
        snprintf(buf, len, "%s closed only after %.1f s in CLOSE_WAIT; eof: %s", sock, s,
                 cw_eof_name(f->eof));
        break;
    case CW_K_EOF_SPIN:
        snprintf(buf, len, "read() returned 0 %u times on %s", f->eof_count, sock);
        break;
    case CW_K_DOUBLE_CLOSE:
        snprintf(buf, len, "close() of fd %d, which was already closed", f->fd);
        break;
    case CW_K_EMFILE:
        snprintf(buf, len, "creating a socket failed with %s while %u tracked sockets were open",
                 f->err == 23 ? "ENFILE" : "EMFILE", f->sockets_open);
        break;
    default: snprintf(buf, len, "%s still open at exit, after %.1f s", sock, f->age_seconds);
    }
}

static void message_json(FILE *out, const struct cw_finding *f)
{
    char text[512], full[1024];
    message_text(text, sizeof text, f);
    snprintf(full, sizeof full, "%s; pid %d (%s)", text, f->proc->pid,
             f->proc->exe[0] ? base_name(f->proc->exe) : "?");
    fputs(",\"message\":{\"text\":", out);
    cw_json_str(out, full);
    fputc('}', out);
}

static void primary_location(FILE *out, const struct cw_finding *f, const struct stack *s)
{
    fputs(",\"locations\":[", out);
    const struct cw_sym_frame *at = cw_first_source_frame(s->f, s->n);
    if (at && (at->file || at->function || at->module)) {
        fputc('{', out);
        location_body(out, at, 0);
        fputc('}', out);
    } else {
        process_location(out, f->proc);
    }
    fputc(']', out);
}

/* The EOF and close sites (or the open site of a double close) as related
 * locations, each at its first frame with source. */
static void related_locations(FILE *out, struct cw_report *r, const struct cw_finding *f)
{
    struct {
        const struct cw_process *p;
        uint32_t id;
        const char *what;
    } sites[] = {
        {f->proc, f->eof_stack, "the peer's close (EOF) was seen here"},
        {f->kind == CW_K_DOUBLE_CLOSE ? cw_open_proc(f) : f->proc,
         f->kind == CW_K_DOUBLE_CLOSE ? f->open_stack : f->close_stack,
         f->kind == CW_K_DOUBLE_CLOSE ? "the socket was opened here"
                                      : "the socket was closed here"},
    };
    int written = 0;
    struct cw_sym_frame frames[CW_FRAMES_MAX];
    for (size_t i = 0; i < sizeof sites / sizeof *sites; i++) {
        int n = cw_stack_frames(r->sym, sites[i].p, sites[i].id, frames, CW_FRAMES_MAX);
        const struct cw_sym_frame *at = cw_first_source_frame(frames, n);
        if (!at || (!at->file && !at->function && !at->module))
            continue;
        fprintf(out,
                "%s{\"id\":%zu,\"message\":{\"text\":", written++ ? "," : ",\"relatedLocations\":[",
                i + 1);
        cw_json_str(out, sites[i].what);
        fputs("},", out);
        location_body(out, at, 0);
        fputc('}', out);
    }
    if (written)
        fputc(']', out);
}

static void properties_json(FILE *out, const struct cw_finding *f)
{
    char local[80], peer[80];
    cw_format_addr(&f->local, local, sizeof local);
    cw_format_addr(&f->peer, peer, sizeof peer);
    fprintf(out, ",\"properties\":{\"pid\":%d,\"fd\":%d,\"local\":", f->proc->pid, f->fd);
    cw_json_str(out, f->local.family ? local : NULL);
    fputs(",\"peer\":", out);
    cw_json_str(out, f->peer.family ? peer : NULL);
    fprintf(out, ",\"eof\":\"%s\",\"secondsInCloseWait\":%.3f,\"tcpState\":\"%s\",\"recvQ\":%u}",
            cw_eof_name(f->eof), f->seconds_in_close_wait,
            cw_tcp_state_name((unsigned)f->tcp_state), f->recv_q);
}

static void suppression_json(FILE *out, struct cw_report *r, const struct cw_finding *f)
{
    if (!f->suppressed)
        return;
    fputs(",\"suppressions\":[{\"kind\":\"external\"", out);
    const struct cw_suppressions *s = r->sup;
    if (s && f->suppressed <= s->n) {
        const struct cw_suppression *rule = &s->v[f->suppressed - 1];
        char why[4200];
        snprintf(why, sizeof why, "%s:%d: %s:%s", s->path, rule->line,
                 rule->kind < 0 ? "socket" : cw_kind_name((enum cw_kind)rule->kind), rule->pattern);
        fputs(",\"justification\":", out);
        cw_json_str(out, why);
    }
    fputs("}]", out);
}

static void result_json(FILE *out, struct cw_report *r, const struct cw_finding *f)
{
    struct stack *s = malloc(sizeof *s); /* frames are large: keep them off the stack */
    if (!s)
        abort(); /* the analyzer has no way on without memory */
    s->n = cw_stack_frames(r->sym, primary_proc(f), primary_stack(f), s->f, CW_FRAMES_MAX);
    fputs("{\"ruleId\":", out);
    cw_json_str(out, cw_kind_name(f->kind));
    fprintf(out, ",\"ruleIndex\":%d,\"level\":", (int)f->kind);
    cw_json_str(out, level_of(f->kind));
    message_json(out, f);
    primary_location(out, f, s);
    related_locations(out, r, f);
    if (s->n) {
        fputs(",\"stacks\":[", out);
        stack_json(out, s, f->kind == CW_K_DOUBLE_CLOSE ? "second close()" : "socket opened");
        fputc(']', out);
    }
    fprintf(out, ",\"partialFingerprints\":{\"closewatch/v1\":\"%016" PRIx64 "\"}",
            fingerprint(f, s));
    properties_json(out, f);
    suppression_json(out, r, f);
    fputc('}', out);
    free(s);
}

void cw_report_sarif(FILE *out, struct cw_report *r)
{
    struct cw_analysis *a = r->a;
    fputs("{\"$schema\":", out);
    cw_json_str(out, SARIF_SCHEMA);
    fputs(",\"version\":\"2.1.0\",\"runs\":[{\"tool\":{\"driver\":{\"name\":\"closewatch\","
          "\"version\":",
          out);
    cw_json_str(out, CW_VERSION);
    fputs(",\"informationUri\":", out);
    cw_json_str(out, INFO_URI);
    fputs(",\"rules\":[", out);
    rules_json(out);
    fputs("]}},\"results\":[", out);

    /* Worst group first, as in the other reports; suppressed ones last. */
    struct cw_group *groups;
    int ng = cw_group_findings(a, &groups), written = 0;
    for (int g = 0; g < ng; g++)
        for (int i = 0; i < groups[g].n; i++) {
            if (written++)
                fputc(',', out);
            result_json(out, r, &a->findings[groups[g].members[i]]);
        }
    cw_free_groups(groups, ng);
    for (int i = 0; i < a->nfindings; i++)
        if (a->findings[i].suppressed) {
            if (written++)
                fputc(',', out);
            result_json(out, r, &a->findings[i]);
        }
    fputs("]}]}\n", out);
}

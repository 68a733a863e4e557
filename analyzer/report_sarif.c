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

#include "json.h"
#include "report.h"

#define SARIF_SCHEMA "https://json.schemastore.org/sarif-2.1.0.json"
#define INFO_URI     "https://github.com/closewatch/closewatch"

/* ---- rules ----------------------------------------------------------------- */

static const char *level_of(const struct cw_kind_info *k)
{
    return k->is_error ? "error" : "note";
}

static void rules_json(FILE *out)
{
    for (int k = 0; k < CW_K_COUNT; k++) {
        const struct cw_kind_info *kind = cw_kind((enum cw_kind)k);
        fputs(k ? ",{\"id\":" : "{\"id\":", out);
        cw_json_str(out, kind->name);
        fputs(",\"shortDescription\":{\"text\":", out);
        cw_json_str(out, kind->short_description);
        fputs("},\"fullDescription\":{\"text\":", out);
        cw_json_str(out, kind->advice);
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
static void physical_location(FILE *out, const struct cw_vframe *f, int with_address)
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
static int location_body(FILE *out, const struct cw_vframe *f, int with_address)
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
static void process_location(FILE *out, const struct cw_vprocess *p)
{
    fputs("{\"logicalLocations\":[{\"fullyQualifiedName\":", out);
    cw_json_str(out, p->exe[0] ? p->exe : p->cmdline);
    fputs(",\"kind\":\"module\"}]}", out);
}

/* ---- stacks and fingerprints --------------------------------------------- */

static void stack_json(FILE *out, const struct cw_vstack *s, const char *message)
{
    fputs("{\"message\":{\"text\":", out);
    cw_json_str(out, message);
    fputs("},\"frames\":[", out);
    for (int i = 0; i < s->n; i++) {
        const struct cw_vframe *f = &s->frames[i];
        fputs(i ? ",{\"location\":{" : "{\"location\":{", out);
        location_body(out, f, f->address != 0); /* a runtime's frame has no address */
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
static uint64_t fingerprint(const struct cw_vfinding *f, const struct cw_vstack *s)
{
    uint64_t h = fnv1a(0xcbf29ce484222325ull, f->kind->name);
    for (int i = 0; i < s->n; i++)
        h = fnv1a(h, s->frames[i].function ? s->frames[i].function
                     : s->frames[i].module ? base_name(s->frames[i].module)
                                           : "?");
    if (!s->n)
        h = fnv1a(h, base_name(f->proc->exe));
    return h;
}

/* ---- results --------------------------------------------------------------- */

static void message_text(char *buf, size_t len, const struct cw_vfinding *f)
{
    char sock[200];
    snprintf(sock, sizeof sock, "socket fd %d (%s <-> %s)", f->fd, f->local[0] ? f->local : "-",
             f->peer[0] ? f->peer : "-");
    double s = f->seconds_in_close_wait;
    switch (f->kind->kind) {
    case CW_K_CLOSE_WAIT:
        snprintf(buf, len, "%s in CLOSE_WAIT for %.1f s without close()%s; eof: %s", sock, s,
                 f->closed_at_exit ? " (closed only at exit, by the process's teardown)" : "",
                 f->eof);
        break;
    case CW_K_UNTRACKED:
        snprintf(buf, len, "%s in CLOSE_WAIT for %.1f s, created outside libc: no backtrace", sock,
                 s);
        break;
    case CW_K_LATE_CLOSE:
        snprintf(buf, len, "%s closed only after %.1f s in CLOSE_WAIT; eof: %s", sock, s, f->eof);
        break;
    case CW_K_EOF_SPIN:
        snprintf(buf, len, "read() returned 0 %u times on %s", f->eof_count, sock);
        break;
    case CW_K_DOUBLE_CLOSE:
        snprintf(buf, len, "close() of fd %d, which was already closed", f->fd);
        break;
    case CW_K_EMFILE:
        snprintf(buf, len, "creating a socket failed with %s while %u tracked sockets were open",
                 f->errno_name, f->sockets_open);
        break;
    default: snprintf(buf, len, "%s still open at exit, after %.1f s", sock, f->age_seconds);
    }
}

static void message_json(FILE *out, const struct cw_vfinding *f)
{
    char text[512], full[1024];
    message_text(text, sizeof text, f);
    snprintf(full, sizeof full, "%s; pid %d (%s)", text, f->proc->pid,
             f->proc->exe[0] ? base_name(f->proc->exe) : "?");
    fputs(",\"message\":{\"text\":", out);
    cw_json_str(out, full);
    fputc('}', out);
}

static void primary_location(FILE *out, const struct cw_vfinding *f)
{
    fputs(",\"locations\":[", out);
    const struct cw_vframe *at = f->placed->at;
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
 * locations, each at the frame that places it. */
static void related_locations(FILE *out, const struct cw_vfinding *f)
{
    int by_close = f->kind->placed_by == CW_PLACE_CLOSE;
    struct {
        const struct cw_vstack *s;
        const char *what;
    } sites[] = {
        {&f->eof_stack, "the peer's close (EOF) was seen here"},
        {by_close ? &f->open : &f->close,
         by_close ? "the socket was opened here" : "the socket was closed here"},
    };
    int written = 0;
    for (size_t i = 0; i < sizeof sites / sizeof *sites; i++) {
        const struct cw_vframe *at = sites[i].s->at;
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

static void properties_json(FILE *out, const struct cw_vfinding *f)
{
    fprintf(out, ",\"properties\":{\"pid\":%d,\"fd\":%d,\"local\":", f->proc->pid, f->fd);
    cw_json_str(out, f->local[0] ? f->local : NULL);
    fputs(",\"peer\":", out);
    cw_json_str(out, f->peer[0] ? f->peer : NULL);
    fprintf(out, ",\"eof\":\"%s\",\"secondsInCloseWait\":%.3f,\"tcpState\":\"%s\",\"recvQ\":%u}",
            f->eof, f->seconds_in_close_wait, f->tcp_state, f->recv_q);
}

static void suppression_json(FILE *out, const struct cw_view *v, const struct cw_vfinding *f)
{
    if (!f->suppressed)
        return;
    fputs(",\"suppressions\":[{\"kind\":\"external\"", out);
    if (f->suppressed <= v->nrules) {
        const struct cw_vrule *rule = &v->rules[f->suppressed - 1];
        char why[4200];
        snprintf(why, sizeof why, "%s:%d: %s:%s", v->suppressions_path, rule->line, rule->kind,
                 rule->pattern);
        fputs(",\"justification\":", out);
        cw_json_str(out, why);
    }
    fputs("}]", out);
}

static void result_json(FILE *out, const struct cw_view *v, const struct cw_vfinding *f)
{
    fputs("{\"ruleId\":", out);
    cw_json_str(out, f->kind->name);
    fprintf(out, ",\"ruleIndex\":%d,\"level\":", (int)f->kind->kind);
    cw_json_str(out, level_of(f->kind));
    message_json(out, f);
    primary_location(out, f);
    related_locations(out, f);
    if (f->placed->n) {
        fputs(",\"stacks\":[", out);
        stack_json(out, f->placed,
                   f->kind->placed_by == CW_PLACE_CLOSE ? "second close()" : "socket opened");
        fputc(']', out);
    }
    fprintf(out, ",\"partialFingerprints\":{\"closewatch/v1\":\"%016" PRIx64 "\"}",
            fingerprint(f, f->placed));
    properties_json(out, f);
    suppression_json(out, v, f);
    fputc('}', out);
}

void cw_report_sarif(FILE *out, const struct cw_view *v)
{
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
    /* Worst group first, as in the other reports; suppressed ones last. */
    fputs("]}},\"results\":[", out);
    for (int i = 0; i < v->nfindings; i++) {
        if (i)
            fputc(',', out);
        result_json(out, v, &v->findings[i]);
    }
    fputs("]}]}\n", out);
}

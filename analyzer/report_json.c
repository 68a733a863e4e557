/*
 * report_json.c - the machine-readable report. The schema is documented in
 * docs/json-schema.md and versioned by "version": fields are only ever
 * added within a version.
 */
#include <inttypes.h>
#include <string.h>

#include "dump.h"
#include "json.h"
#include "report.h"

#define CW_JSON_VERSION 1

static void frames_json(FILE *out, struct cw_report *r, const struct cw_process *p, uint32_t id)
{
    struct cw_sym_frame f[CW_FRAMES_MAX];
    int n = cw_stack_frames(r->sym, p, id, f, CW_FRAMES_MAX);
    fputc('[', out);
    for (int i = 0; i < n; i++) {
        fprintf(out, "%s{\"address\":\"0x%" PRIx64 "\",\"module\":", i ? "," : "", f[i].address);
        cw_json_str(out, f[i].module);
        fputs(",\"function\":", out);
        cw_json_str(out, f[i].function);
        fputs(",\"file\":", out);
        cw_json_str(out, f[i].file);
        if (f[i].line)
            fprintf(out, ",\"line\":%d", f[i].line);
        else
            fputs(",\"line\":null", out);
        fprintf(out, ",\"inlined\":%s}", f[i].inlined ? "true" : "false");
    }
    fputc(']', out);
}

static double rel(const struct cw_process *p, uint64_t ns)
{
    return ns > p->start_mono_ns ? (double)(ns - p->start_mono_ns) / 1e9 : 0.0;
}

static const char *family_name(int f)
{
    return f == 2 ? "inet" : f == 10 ? "inet6" : f == 1 ? "unix" : "other";
}

static void finding_json(FILE *out, struct cw_report *r, const struct cw_finding *f, int group)
{
    char local[80], peer[80];
    cw_format_addr(&f->local, local, sizeof local);
    cw_format_addr(&f->peer, peer, sizeof peer);
    fprintf(out,
            "{\"kind\":\"%s\",\"group\":%d,\"pid\":%d,\"fd\":%d,\"socket_id\":%" PRIu64
            ",\"inode\":%" PRIu64 ",\"family\":\"%s\",\"origin\":\"%s\",\"local\":",
            cw_kind_name(f->kind), group, f->proc->pid, f->fd, f->sid, f->inode,
            family_name(f->family), cw_origin_name((unsigned)f->origin));
    cw_json_str(out, f->local.family ? local : NULL);
    fputs(",\"peer\":", out);
    cw_json_str(out, f->peer.family ? peer : NULL);
    fprintf(out, ",\"eof\":\"%s\",\"eof_how\":", cw_eof_name(f->eof));
    cw_json_str(out, f->eof_ns ? cw_eof_how_name((unsigned)f->eof_how) : NULL);
    fprintf(out, ",\"eof_count\":%u,\"seconds_in_close_wait\":%.3f,\"age_seconds\":%.3f",
            f->eof_count, f->seconds_in_close_wait, f->age_seconds);
    fprintf(out, ",\"closed\":%s,\"closed_only_at_exit\":%s,\"close_how\":",
            f->closed ? "true" : "false", f->closed_at_exit ? "true" : "false");
    cw_json_str(out, f->closed && f->close_how ? cw_close_how_name((unsigned)f->close_how) : NULL);
    fprintf(out, ",\"tcp_state\":\"%s\",\"recv_q\":%u", cw_tcp_state_name((unsigned)f->tcp_state),
            f->recv_q);
    if (f->kind == CW_K_EMFILE)
        fprintf(out, ",\"errno\":\"%s\",\"sockets_open\":%u", f->err == 23 ? "ENFILE" : "EMFILE",
                f->sockets_open);
    fprintf(out, ",\"suppressed\":%s", f->suppressed ? "true" : "false");
    fputs(",\"stacks\":{\"open\":", out);
    frames_json(out, r, cw_open_proc(f), f->open_stack);
    fputs(",\"eof\":", out);
    frames_json(out, r, f->proc, f->eof_stack);
    fputs(",\"close\":", out);
    frames_json(out, r, f->proc, f->close_stack);
    fputs("},\"timeline\":[", out);
    for (int i = 0; i < f->ntimeline; i++)
        fprintf(out, "%s{\"t\":%.6f,\"event\":\"%s\"}", i ? "," : "",
                rel(f->proc, f->timeline[i].mono_ns), cw_event_type_name(f->timeline[i].type));
    fputs("]}", out);
}

static void process_json(FILE *out, const struct cw_process *p)
{
    char started[64];
    cw_iso8601(started, sizeof started, p->start_realtime_ns);
    fprintf(out, "{\"pid\":%d,\"ppid\":%d,\"exe\":", p->pid, p->ppid);
    cw_json_str(out, p->exe);
    fputs(",\"argv\":", out);
    cw_json_str(out, p->cmdline);
    fputs(",\"ring\":", out);
    cw_json_str(out, p->has_ring ? p->ring_path : NULL);
    fprintf(out, ",\"state\":\"%s\",\"started_at\":", cw_end_name(p->end));
    cw_json_str(out, p->start_realtime_ns ? started : NULL);
    fprintf(out,
            ",\"duration_seconds\":%.3f,\"sockets_seen\":%d,\"sockets_open\":%d,\"events\":%" PRIu64
            ",\"events_overwritten\":%" PRIu64 ",\"events_torn\":%" PRIu64
            ",\"events_dropped\":%" PRIu64 ",\"stacks_dropped\":%" PRIu64 ",\"backtraces\":%s}",
            p->start_mono_ns ? rel(p, p->end_mono_ns) : 0.0, p->sockets_seen, p->sockets_open,
            p->events, p->overwritten, p->torn, p->dropped, p->stacks_dropped,
            p->has_ring ? "true" : "false");
}

void cw_report_json(FILE *out, struct cw_report *r)
{
    struct cw_analysis *a = r->a;
    char now[64];
    cw_iso8601(now, sizeof now, a->now_realtime_ns);
    fprintf(out, "{\"schema\":\"closewatch-report\",\"version\":%d,", CW_JSON_VERSION);
    fprintf(out, "\"tool\":{\"name\":\"closewatch\",\"version\":\"%s\"},\"generated_at\":\"%s\",",
            CW_VERSION, now);
    fprintf(out, "\"options\":{\"grace_seconds\":%.3f,\"spin_threshold\":%u},", a->opt.grace_s,
            a->opt.spin_threshold);
    fputs("\"processes\":[", out);
    for (int i = 0; i < a->nprocs; i++) {
        if (i)
            fputc(',', out);
        process_json(out, a->procs[i]);
    }
    fputs("],\"findings\":[", out);

    /* Findings in group order, so "group" numbers match the text report. */
    struct cw_group *groups;
    int ng = cw_group_findings(a, &groups), written = 0;
    for (int g = 0; g < ng; g++)
        for (int i = 0; i < groups[g].n; i++) {
            if (written++)
                fputc(',', out);
            finding_json(out, r, &a->findings[groups[g].members[i]], g);
        }
    for (int i = 0; i < a->nfindings; i++)
        if (a->findings[i].suppressed) {
            if (written++)
                fputc(',', out);
            finding_json(out, r, &a->findings[i], -1);
        }
    cw_free_groups(groups, ng);

    int errors = 0;
    for (int k = 0; k < CW_K_COUNT; k++)
        errors += cw_kind_is_error((enum cw_kind)k) ? a->counts[k] : 0;
    fprintf(out, "],\"summary\":{\"findings\":%d,\"errors\":%d,\"suppressed\":%d,\"by_kind\":{",
            a->nfindings - a->suppressed_total, errors, a->suppressed_total);
    for (int k = 0; k < CW_K_COUNT; k++)
        fprintf(out, "%s\"%s\":%d", k ? "," : "", cw_kind_name((enum cw_kind)k), a->counts[k]);
    fputs("}},\"suppressions\":[", out);
    for (int i = 0; r->sup && i < r->sup->n; i++) {
        fputs(i ? ",{\"kind\":" : "{\"kind\":", out);
        cw_json_str(out, r->sup->v[i].kind < 0 ? "socket"
                                               : cw_kind_name((enum cw_kind)r->sup->v[i].kind));
        fputs(",\"pattern\":", out);
        cw_json_str(out, r->sup->v[i].pattern);
        fprintf(out, ",\"hits\":%d}", r->sup->v[i].hits);
    }
    fputs("],\"warnings\":[", out);
    int i = 0;
    for (const char *const *w = cw_symbolizer_warnings(r->sym); w && *w; w++) {
        if (i++)
            fputc(',', out);
        cw_json_str(out, *w);
    }
    fputs("]}\n", out);
}

/*
 * report_json.c - the machine-readable report. The schema is documented in
 * README.md ("JSON report") and versioned by "version": fields are only
 * ever added within a version.
 */
#include <inttypes.h>
#include <string.h>

#include "json.h"
#include "report.h"

#define CW_JSON_VERSION 1

static void frames_json(FILE *out, const struct cw_vstack *s)
{
    fputc('[', out);
    for (int i = 0; i < s->n; i++) {
        const struct cw_vframe *f = &s->frames[i];
        fprintf(out, "%s{\"address\":\"0x%" PRIx64 "\",\"module\":", i ? "," : "", f->address);
        cw_json_str(out, f->module);
        fputs(",\"function\":", out);
        cw_json_str(out, f->function);
        fputs(",\"file\":", out);
        cw_json_str(out, f->file);
        if (f->line)
            fprintf(out, ",\"line\":%d", f->line);
        else
            fputs(",\"line\":null", out);
        fprintf(out, ",\"inlined\":%s,\"language\":\"%s\"}", f->inlined ? "true" : "false",
                f->language);
    }
    fputc(']', out);
}

static void finding_json(FILE *out, const struct cw_vfinding *f)
{
    fprintf(out,
            "{\"kind\":\"%s\",\"group\":%d,\"pid\":%d,\"fd\":%d,\"socket_id\":%" PRIu64
            ",\"inode\":%" PRIu64 ",\"family\":\"%s\",\"origin\":\"%s\",\"local\":",
            f->kind->name, f->group, f->proc->pid, f->fd, f->socket_id, f->inode, f->family,
            f->origin);
    cw_json_str(out, f->local[0] ? f->local : NULL);
    fputs(",\"peer\":", out);
    cw_json_str(out, f->peer[0] ? f->peer : NULL);
    fprintf(out, ",\"eof\":\"%s\",\"eof_how\":", f->eof);
    cw_json_str(out, f->eof_how);
    fprintf(out, ",\"eof_count\":%u,\"seconds_in_close_wait\":%.3f,\"age_seconds\":%.3f",
            f->eof_count, f->seconds_in_close_wait, f->age_seconds);
    fprintf(out, ",\"closed\":%s,\"closed_only_at_exit\":%s,\"close_how\":",
            f->closed ? "true" : "false", f->closed_at_exit ? "true" : "false");
    cw_json_str(out, f->close_how);
    fprintf(out, ",\"tcp_state\":\"%s\",\"recv_q\":%u", f->tcp_state, f->recv_q);
    if (f->errno_name)
        fprintf(out, ",\"errno\":\"%s\",\"sockets_open\":%u", f->errno_name, f->sockets_open);
    fprintf(out, ",\"suppressed\":%s", f->suppressed ? "true" : "false");
    if (f->listener_fd >= 0)
        fprintf(out, ",\"listener_fd\":%d", f->listener_fd);
    else
        fputs(",\"listener_fd\":null", out);
    fputs(",\"no_stack_note\":", out); /* why stacks.open is empty, or null */
    cw_json_str(out, f->no_stack_note[0] ? f->no_stack_note : NULL);
    fputs(",\"request_note\":", out);
    cw_json_str(out, f->request_note[0] ? f->request_note : NULL);
    fputs(",\"stacks\":{\"open\":", out);
    frames_json(out, &f->open);
    fputs(",\"eof\":", out);
    frames_json(out, &f->eof_stack);
    fputs(",\"close\":", out);
    frames_json(out, &f->close);
    fputs(",\"listener\":", out);
    frames_json(out, &f->listener);
    fputs(",\"request\":", out);
    frames_json(out, &f->request);
    fputs("},\"timeline\":[", out);
    for (int i = 0; i < f->ntimeline; i++)
        fprintf(out, "%s{\"t\":%.6f,\"event\":\"%s\"}", i ? "," : "", f->timeline[i].t,
                f->timeline[i].event);
    fputs("]}", out);
}

/* Seconds, or null for a negative "not known". */
static void seconds_or_null(FILE *out, double t)
{
    if (t < 0)
        fputs("null", out);
    else
        fprintf(out, "%.3f", t);
}

static void process_json(FILE *out, const struct cw_vprocess *p)
{
    fprintf(out, "{\"pid\":%d,\"ppid\":%d,\"exe\":", p->pid, p->ppid);
    cw_json_str(out, p->exe);
    fputs(",\"argv\":", out);
    cw_json_str(out, p->cmdline);
    fputs(",\"ring\":", out);
    cw_json_str(out, p->ring);
    fputs(",\"runtime_note\":", out);
    cw_json_str(out, p->runtime_note);
    fputs(",\"recorder\":", out);
    cw_json_str(out, p->recorder);
    fputs(",\"recorded_from_seconds\":", out);
    seconds_or_null(out, p->attached_t);
    fputs(",\"recorded_until_seconds\":", out);
    seconds_or_null(out, p->detached_t);
    fputs(",\"record_note\":", out);
    cw_json_str(out, p->record_note);
    fprintf(out, ",\"state\":\"%s\",\"started_at\":", p->state);
    cw_json_str(out, p->started);
    fprintf(out,
            ",\"duration_seconds\":%.3f,\"sockets_seen\":%d,\"sockets_open\":%d,\"events\":%" PRIu64
            ",\"events_overwritten\":%" PRIu64 ",\"events_torn\":%" PRIu64
            ",\"events_dropped\":%" PRIu64 ",\"stacks_dropped\":%" PRIu64 ",\"backtraces\":%s",
            p->duration_s, p->sockets_seen, p->sockets_open, p->events, p->overwritten, p->torn,
            p->dropped, p->stacks_dropped, p->has_ring ? "true" : "false");
    /* The counts over the whole life (the ring's series; [] without one). */
    fputs(",\"series\":[", out);
    for (int i = 0; i < p->nseries; i++)
        fprintf(out, "%s{\"t\":%.3f,\"open\":%d,\"close_wait\":%d}", i ? "," : "", p->series[i].t,
                p->series[i].open, p->series[i].close_wait);
    fputs("]}", out);
}

void cw_report_json(FILE *out, const struct cw_view *v)
{
    fprintf(out, "{\"schema\":\"closewatch-report\",\"version\":%d,", CW_JSON_VERSION);
    fprintf(out, "\"tool\":{\"name\":\"closewatch\",\"version\":\"%s\"},\"generated_at\":\"%s\",",
            CW_VERSION, v->generated_at);
    fprintf(out, "\"options\":{\"grace_seconds\":%.3f,\"spin_threshold\":%u},", v->grace_s,
            v->spin_threshold);
    fputs("\"processes\":[", out);
    for (int i = 0; i < v->nprocs; i++) {
        if (i)
            fputc(',', out);
        process_json(out, &v->procs[i]);
    }
    /* Findings in group order, so "group" numbers match the text report. */
    fputs("],\"findings\":[", out);
    for (int i = 0; i < v->nfindings; i++) {
        if (i)
            fputc(',', out);
        finding_json(out, &v->findings[i]);
    }
    fprintf(out, "],\"summary\":{\"findings\":%d,\"errors\":%d,\"suppressed\":%d,\"by_kind\":{",
            v->nshown, v->errors, v->suppressed);
    for (int k = 0; k < CW_K_COUNT; k++)
        fprintf(out, "%s\"%s\":%d", k ? "," : "", cw_kind_name((enum cw_kind)k), v->counts[k]);
    fputs("}},\"suppressions\":[", out);
    for (int i = 0; i < v->nrules; i++) {
        fputs(i ? ",{\"kind\":" : "{\"kind\":", out);
        cw_json_str(out, v->rules[i].kind);
        fputs(",\"pattern\":", out);
        cw_json_str(out, v->rules[i].pattern);
        fprintf(out, ",\"hits\":%d}", v->rules[i].hits);
    }
    fputs("],\"warnings\":[", out);
    for (int i = 0; v->warnings && v->warnings[i]; i++) {
        if (i)
            fputc(',', out);
        cw_json_str(out, v->warnings[i]);
    }
    fputs("]}\n", out);
}

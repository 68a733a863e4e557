/*
 * dump.c - `closewatch dump RING`: everything a ring file holds, raw, for
 * debugging the recorder and the analyzer. Stacks are printed as addresses
 * with their module and offset; reports symbolize, dump does not.
 */
#include "dump.h"
#include "lang_frames.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

void cw_format_addr(const struct cw_addr *a, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN];
    switch (a->family) {
    case AF_INET:
        inet_ntop(AF_INET, a->bytes, ip, sizeof ip);
        snprintf(buf, len, "%s:%u", ip, a->port);
        break;
    case AF_INET6:
        inet_ntop(AF_INET6, a->bytes, ip, sizeof ip);
        snprintf(buf, len, "[%s]:%u", ip, a->port);
        break;
    case AF_UNIX:
        snprintf(buf, len, "unix:%.*s", (int)sizeof a->bytes, (const char *)a->bytes);
        break;
    default: snprintf(buf, len, "-");
    }
}

const char *cw_family_name(unsigned f)
{
    switch (f) {
    case AF_INET: return "inet";
    case AF_INET6: return "inet6";
    case AF_UNIX: return "unix";
    case AF_NETLINK: return "netlink";
    default: return "other";
    }
}

static const char *type_name(unsigned t)
{
    switch (t) {
    case SOCK_STREAM: return "stream";
    case SOCK_DGRAM: return "dgram";
    case SOCK_SEQPACKET: return "seqpacket";
    case SOCK_RAW: return "raw";
    default: return "other";
    }
}

static double rel_s(const struct cw_ring *r, uint64_t mono_ns)
{
    return mono_ns ? ((double)mono_ns - (double)r->hdr.start_mono_ns) / 1e9 : 0.0;
}

/* Native frames as addresses with module+offset; language frames
 * (lang_frames.h) as "py function (file:line)" where they ran. */
static void dump_stack(FILE *out, const struct cw_ring *r, uint32_t id)
{
    static struct cw_hframe f[CW_MAX_DEPTH + CW_LANG_DEPTH];
    int truncated = 0;
    int n = cw_lang_hybrid(r, id, f, (int)(sizeof f / sizeof *f), &truncated);
    uint32_t nmods = cw_ring_module_count(r);
    for (int i = 0; i < n; i++) {
        if (f[i].lang != CW_LANG_NATIVE) {
            fprintf(out, "      #%d %s %s (%s:%d)\n", i, cw_lang_name(f[i].lang), f[i].function,
                    f[i].file, f[i].line);
            continue;
        }
        const char *mod = "?";
        uint64_t off = f[i].pc;
        struct cw_module m;
        for (uint32_t j = 0; j < nmods; j++) {
            if (cw_ring_module(r, j, &m) && f[i].pc >= m.start && f[i].pc < m.end) {
                mod = m.path;
                off = f[i].pc - m.bias;
                break;
            }
        }
        fprintf(out, "      #%d 0x%016" PRIx64 " %s+0x%" PRIx64 "%s\n", i, f[i].pc, mod, off,
                f[i].eval ? " [eval]" : "");
    }
    if (truncated)
        fprintf(out, "      (language frames deeper than %d not kept)\n", CW_LANG_DEPTH);
}

void cw_dump(FILE *out, const struct cw_ring *r)
{
    const struct cw_header *h = &r->hdr;
    static const char *const states[] = {"running", "exited", "execed"};
    fprintf(out, "ring %s\n", r->path);
    fprintf(out, "  layout v%u, %" PRIu64 " bytes\n", h->version, h->file_size);
    fprintf(out, "  pid %d ppid %d uid %u image %u state %s\n", h->pid, h->ppid, h->uid,
            h->image_seq, states[h->exit_state]);
    fprintf(out, "  exe %s\n  argv", h->exe);
    for (uint32_t i = 0; i < h->argv_len; i += (uint32_t)strlen(h->argv + i) + 1)
        fprintf(out, " %s", h->argv + i);
    fprintf(out, "\n  started %.3f (realtime s), ran %.3f s%s\n",
            (double)h->start_realtime_ns / 1e9,
            rel_s(r, h->exit_mono_ns ? h->exit_mono_ns : h->heartbeat_mono_ns),
            h->exit_mono_ns ? "" : " (to last heartbeat)");
    fprintf(
        out,
        "  sampler every %u ms; fd table %u, stacks %u x depth %u, modules %u, ring %u events\n",
        h->sample_ms, h->fd_cap, h->stack_cap, h->stack_depth, h->module_cap, h->ring_cap);
    char why[200];
    for (unsigned lang = 1; lang < CW_LANG_MAX; lang++) {
        if (cw_lang_unsupported(r, lang, why, sizeof why))
            fprintf(out, "  %s frames: not recorded: %s\n", cw_lang_name(lang), why);
        else if (cw_lang_runtime_name(r, lang, why, sizeof why))
            fprintf(out, "  %s frames: recorded (%s)\n", cw_lang_name(lang), why);
    }
    struct cw_ring_live live;
    cw_ring_live(r, &live);
    fprintf(out,
            "  counters: events %" PRIu64 ", dropped %" PRIu64 ", stacks dropped %" PRIu64
            ", fds beyond table %" PRIu64 ", modules dropped %" PRIu64 ", sockets open %u"
            ", language frames dropped %" PRIu64 " (arena %u of %u bytes)\n",
            live.write_idx, live.events_dropped, live.stacks_dropped, live.fds_beyond_table,
            live.modules_dropped, live.sockets_open, live.lang_dropped, live.blob_used,
            h->blob_size);

    fprintf(out, "\nfd table (sockets):\n");
    for (uint32_t fd = 0; fd < h->fd_cap; fd++) {
        struct cw_fd_entry e;
        if (!cw_ring_fd(r, fd, &e) || !e.sid)
            continue;
        char local[80], peer[80];
        cw_format_addr(&e.local, local, sizeof local);
        cw_format_addr(&e.peer, peer, sizeof peer);
        fprintf(out,
                "  fd %u sid %" PRIu64 " %s %s/%s %s inode %" PRIu64 " %s -> %s state %s"
                " flags 0x%x open %.3f eof %.3f (x%u) close %.3f close_wait %.3f\n",
                fd, e.sid & ~CW_SID_OPEN, (e.sid & CW_SID_OPEN) ? "OPEN" : "closed",
                cw_family_name(e.family), type_name(e.type), cw_origin_name(e.origin), e.inode,
                local, peer, cw_tcp_state_name(e.tcp_state), e.flags, rel_s(r, e.open_ns),
                rel_s(r, e.eof_ns), e.eof_count, rel_s(r, e.close_ns), rel_s(r, e.close_wait_ns));
        if (e.open_stack) {
            fprintf(out, "    open stack %u:\n", e.open_stack);
            dump_stack(out, r, e.open_stack);
        }
        if (e.eof_stack) {
            fprintf(out, "    eof stack %u:\n", e.eof_stack);
            dump_stack(out, r, e.eof_stack);
        }
        if (e.close_stack) {
            fprintf(out, "    close stack %u:\n", e.close_stack);
            dump_stack(out, r, e.close_stack);
        }
    }

    fprintf(out, "\nmodules:\n");
    for (uint32_t i = 0; i < cw_ring_module_count(r); i++) {
        struct cw_module m;
        if (!cw_ring_module(r, i, &m))
            continue;
        fprintf(out, "  0x%016" PRIx64 "-0x%016" PRIx64 " bias 0x%" PRIx64 " %s build-id ", m.start,
                m.end, m.bias, m.path);
        for (uint32_t j = 0; j < m.build_id_len; j++)
            fprintf(out, "%02x", m.build_id[j]);
        fprintf(out, "\n");
    }

    fprintf(out, "\nevents:\n");
    struct cw_ring_iter it;
    struct cw_event ev;
    cw_ring_iter_begin(r, &it);
    while (cw_ring_iter_next(r, &it, &ev))
        fprintf(out,
                "  %10.6f tid %u %-12s fd %d sid %" PRIu64 " stack %u args %" PRId64 " %" PRId64
                " %" PRId64 "\n",
                rel_s(r, ev.time_ns), ev.tid, cw_event_type_name(ev.type), ev.fd, ev.sid, ev.stack,
                ev.arg0, ev.arg1, ev.arg2);
    fprintf(out, "  (%" PRIu64 " overwritten, %" PRIu64 " torn)\n", it.overwritten, it.torn);

    static struct cw_series_point pts[CW_SERIES_CAP];
    int n = cw_ring_series(r, pts, CW_SERIES_CAP);
    fprintf(out, "\ncount series (%d points, %u rounds each):\n", n, h->series_stride);
    for (int i = 0; i < n; i++)
        fprintf(out, "  %10.6f open %u close_wait %u\n", rel_s(r, pts[i].mono_ns), pts[i].open,
                pts[i].close_wait);
}

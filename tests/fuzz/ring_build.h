/*
 * ring_build.h - builds small, valid closewatch ring files in memory with the
 * real layout (common/shm_layout.h). Owned by the fuzzing work: shared by the
 * seed generator (tests/fuzz/make_seed.c) and the malformed-ring regression
 * tests (tests/test_fuzz_regress.c), so that both start from rings the reader
 * accepts and differ from them only in what they mean to break.
 *
 * Header-only with static inline functions because the Makefile compiles
 * every tests/test_*.c into one binary and make_seed.c is built on its own:
 * neither has a place for a separate object file.
 */
#ifndef CW_RING_BUILD_H
#define CW_RING_BUILD_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "../../common/shm_layout.h"

struct rb_spec {
    uint32_t fd_cap, stack_cap, stack_depth, module_cap, ring_cap; /* ring_cap: power of two */
    uint32_t exit_state;                                           /* 0..2 */
    uint64_t events; /* write_idx: events ever claimed; > ring_cap wraps */
    int64_t torn;    /* this many events before the newest is left torn; -1: none */
    int reverse;     /* sections in reverse order (ring first), to vary offsets */
    int gap;         /* bytes of padding between sections (rounded up to 8) */
};

/* The defaults the brief of the fuzz target asks for: tiny but complete. */
static inline struct rb_spec rb_default(void)
{
    struct rb_spec s = {16, 4, 4, 2, 8, 0, 5, -1, 0, 0};
    return s;
}

static inline uint64_t rb_align8(uint64_t v)
{
    return (v + 7) & ~(uint64_t)7;
}

struct rb_layout {
    uint64_t fd_off, stack_off, module_off, ring_off, size;
    uint32_t slot_size;
    uint64_t lang_stack_off, code_off, blob_off; /* after the others, always */
    uint32_t lang_slot_size;
};

/* The language sections: tiny, fixed. */
#define RB_LANG_STACKS 4
#define RB_LANG_DEPTH  4
#define RB_CODES       4
#define RB_BLOB        256

/* Where each section goes; sizes are those the reader checks against. */
static inline struct rb_layout rb_layout_of(const struct rb_spec *s)
{
    struct rb_layout l;
    uint64_t gap = rb_align8((uint64_t)(s->gap > 0 ? s->gap : 0));
    l.slot_size = (uint32_t)(sizeof(struct cw_stack_slot) + 8u * s->stack_depth);
    uint64_t len[4] = {
        (uint64_t)s->fd_cap * sizeof(struct cw_fd_entry),
        (uint64_t)s->stack_cap * l.slot_size,
        (uint64_t)s->module_cap * sizeof(struct cw_module),
        (uint64_t)s->ring_cap * sizeof(struct cw_event),
    };
    uint64_t off[4];
    uint64_t at = rb_align8(sizeof(struct cw_header)) + gap;
    for (int k = 0; k < 4; k++) {
        int i = s->reverse ? 3 - k : k;
        off[i] = at;
        at = rb_align8(at + len[i]) + gap;
    }
    l.fd_off = off[0];
    l.stack_off = off[1];
    l.module_off = off[2];
    l.ring_off = off[3];
    l.lang_slot_size = (uint32_t)(sizeof(struct cw_lang_stack_slot) +
                                  sizeof(struct cw_lang_frame) * RB_LANG_DEPTH);
    l.lang_stack_off = at;
    at = rb_align8(at + (uint64_t)RB_LANG_STACKS * l.lang_slot_size);
    l.code_off = at;
    at = rb_align8(at + (uint64_t)RB_CODES * sizeof(struct cw_code));
    l.blob_off = at;
    at = rb_align8(at + RB_BLOB);
    l.size = at;
    return l;
}

static inline size_t rb_size(const struct rb_spec *s)
{
    return (size_t)rb_layout_of(s).size;
}

static inline void rb_addr4(struct cw_addr *a, uint8_t last, uint16_t port)
{
    a->family = AF_INET;
    a->port = port;
    a->bytes[0] = 127;
    a->bytes[3] = last;
}

/*
 * Writes the ring described by s into buf (which must be 8-byte aligned and
 * hold rb_size(s) bytes). Returns the size written, or 0 when buf is too small.
 */
static inline size_t rb_build(void *buf, size_t cap, const struct rb_spec *s)
{
    struct rb_layout l = rb_layout_of(s);
    if (cap < l.size)
        return 0;
    uint8_t *base = buf;
    memset(base, 0, (size_t)l.size);

    struct cw_header *h = (struct cw_header *)base;
    h->magic = CW_MAGIC;
    h->version = CW_LAYOUT_VERSION;
    h->header_size = sizeof *h;
    h->file_size = l.size;
    h->pid = 4242;
    h->ppid = 1;
    h->uid = 1000;
    h->exit_state = s->exit_state;
    h->proc_starttime = 123456;
    h->start_realtime_ns = 1700000000000000000ull;
    h->start_mono_ns = 1000000000ull;
    h->heartbeat_mono_ns = 3000000000ull;
    h->exit_mono_ns = s->exit_state ? 3500000000ull : 0;
    h->sample_ms = 1000;
    h->image_seq = s->exit_state == CW_EXECED ? 1 : 0;
    h->fd_off = l.fd_off;
    h->fd_cap = s->fd_cap;
    h->fd_entry_size = sizeof(struct cw_fd_entry);
    h->stack_off = l.stack_off;
    h->stack_cap = s->stack_cap;
    h->stack_slot_size = l.slot_size;
    h->stack_depth = s->stack_depth;
    h->module_off = l.module_off;
    h->module_cap = s->module_cap;
    h->module_entry_size = sizeof(struct cw_module);
    h->ring_off = l.ring_off;
    h->ring_cap = s->ring_cap;
    h->event_size = sizeof(struct cw_event);
    h->write_idx = s->events;
    h->events_dropped = 1;
    h->module_count = s->module_cap;
    h->next_sid = 8;
    strcpy(h->exe, "/usr/bin/seed");
    static const char argv[] = "seed\0--port\0"
                               "8080";
    memcpy(h->argv, argv, sizeof argv);
    h->argv_len = sizeof argv;

    /* Modules first: stack pcs are placed inside their ranges. */
    static const char *const paths[] = {"/usr/bin/seed", "/lib/x86_64-linux-gnu/libc.so.6"};
    for (uint32_t i = 0; i < s->module_cap; i++) {
        struct cw_module *m = (struct cw_module *)(base + l.module_off + (uint64_t)i * sizeof *m);
        m->bias = 0x555500000000ull + (uint64_t)i * 0x100000000ull;
        m->start = m->bias + 0x1000;
        m->end = m->bias + 0x9000;
        m->loaded_ns = h->start_mono_ns;
        m->build_id_len = 20;
        for (int b = 0; b < 20; b++)
            m->build_id[b] = (uint8_t)(0xa0 + b + (int)i);
        strcpy(m->path, paths[i % 2]);
        m->ready = i < 2 ? 1 : (i & 1); /* a claimed but unpublished slot too */
    }

    /* Stacks: all but the last claimed slot are published; the last is
     * claimed (hash set) but not ready, as a writer interrupted would leave. */
    for (uint32_t i = 0; i < s->stack_cap; i++) {
        uint8_t *p = base + l.stack_off + (uint64_t)i * l.slot_size;
        struct cw_stack_slot *st = (struct cw_stack_slot *)p;
        st->hash = 0x9e3779b97f4a7c15ull * (i + 1);
        st->depth = i % s->stack_depth + 1;
        st->ready = (i + 1 < s->stack_cap || s->stack_cap == 1) ? 1 : 0;
        for (uint32_t d = 0; d < st->depth; d++) {
            uint64_t pc = 0x555500001000ull + 0x10 * (d + 1) + i;
            if (d & 1)
                pc += 0x100000000ull; /* in the second module */
            if (d == 2)
                pc = 0x7fff00000000ull; /* in no module */
            memcpy(p + sizeof *st + 8u * d, &pc, sizeof pc);
        }
    }

    /* fd entries: a connected inet socket, a closed inet6 one, a listening
     * unix socket and, when the table is big enough, its very last slot. */
    uint32_t fds[] = {3, 4, 5, s->fd_cap - 1};
    for (size_t k = 0; k < sizeof fds / sizeof *fds; k++) {
        uint32_t fd = fds[k];
        if (fd >= s->fd_cap || (k == 3 && fd <= 5))
            continue;
        struct cw_fd_entry *e = (struct cw_fd_entry *)(base + l.fd_off + (uint64_t)fd * sizeof *e);
        e->sid = (k + 1) | (k == 1 ? 0 : CW_SID_OPEN);
        e->type = SOCK_STREAM;
        e->inode = 90000 + fd;
        e->open_ns = h->start_mono_ns + 1000000 * (k + 1);
        e->open_stack = s->stack_cap ? (uint32_t)(k % s->stack_cap) + 1 : 0;
        e->open_tid = 4242;
        switch (k) {
        case 0:
            e->family = AF_INET;
            e->origin = CW_ORIGIN_SOCKET;
            e->flags = CW_FD_CONNECTED | CW_FD_EOF_POLLED;
            e->tcp_state = CW_TCP_CLOSE_WAIT;
            rb_addr4(&e->local, 1, 40000);
            rb_addr4(&e->peer, 1, 8080);
            e->eof_ns = e->open_ns + 5000000;
            e->eof_count = 3;
            e->eof_stack = s->stack_cap; /* the unpublished slot: must print nothing */
            e->close_wait_ns = e->open_ns + 6000000;
            break;
        case 1:
            e->family = AF_INET6;
            e->origin = CW_ORIGIN_ACCEPT;
            e->local.family = e->peer.family = AF_INET6;
            e->local.bytes[15] = 1;
            e->peer.bytes[15] = 1;
            e->peer.port = 5555;
            e->close_ns = e->open_ns + 9000000;
            e->close_stack = s->stack_cap + 1; /* out of range: must be ignored */
            break;
        case 2:
            e->family = AF_UNIX;
            e->origin = CW_ORIGIN_SOCKETPAIR;
            e->flags = CW_FD_LISTENING;
            e->local.family = AF_UNIX;
            memset(e->local.bytes, 'u', sizeof e->local.bytes); /* unterminated path */
            break;
        default:
            e->family = AF_INET;
            e->origin = CW_ORIGIN_UNTRACKED;
            e->tcp_state = 200; /* out of the name table */
            break;
        }
    }

    /* Language frames: two code records (a third claimed, unpublished), a
     * language stack over them, one naming a code id out of range, one
     * unpublished; stack slot i runs language stack i % 4 (0: none). */
    h->lang_stack_off = l.lang_stack_off;
    h->lang_stack_cap = RB_LANG_STACKS;
    h->lang_stack_slot_size = l.lang_slot_size;
    h->lang_depth = RB_LANG_DEPTH;
    h->code_off = l.code_off;
    h->code_cap = RB_CODES;
    h->blob_off = l.blob_off;
    h->blob_size = RB_BLOB;
    static const char blob[] = "Handler.handle\0/srv/app.py\0<module>\0"
                               "\xea\x04\xd0\x01\x05"; /* 3.11 table: +2 for 3 units, +0 for 1 */
    memcpy(base + l.blob_off, blob, sizeof blob);
    h->blob_used = sizeof blob - 1;
    struct cw_code *codes = (struct cw_code *)(base + l.code_off);
    for (uint32_t i = 0; i < 3; i++) {
        struct cw_code *c = &codes[i];
        c->hash = i + 1;
        c->key[0] = 0x7f0000001000ull + i;
        c->ready = i < 2;
        c->lang = CW_LANG_PYTHON;
        c->version = 0x030b02f0;
        c->first_line = 10 * (int32_t)(i + 1);
        c->name_off = i ? 27 : 0;
        c->name_len = i ? 8 : 14;
        c->file_off = 15;
        c->file_len = 11;
        c->lines_off = 36;
        c->lines_len = 5;
    }
    for (uint32_t i = 0; i < 3; i++) {
        struct cw_lang_stack_slot *ls =
            (struct cw_lang_stack_slot *)(base + l.lang_stack_off + (uint64_t)i * l.lang_slot_size);
        ls->hash = i + 1;
        ls->ready = i < 2;
        ls->lang = CW_LANG_PYTHON;
        ls->depth = i ? 1 : 3;
        ls->frames[0].code = i ? 99 : 1; /* 99: out of range */
        ls->frames[0].pos = 4;
        ls->frames[1].code = 2;
        ls->frames[1].pos = 6 | CW_LF_ENTRY;
        ls->frames[2].code = 3; /* unpublished */
        ls->frames[2].pos = CW_LF_ENTRY;
        ls->truncated = i == 0;
    }
    for (uint32_t i = 0; i < s->stack_cap; i++)
        ((struct cw_stack_slot *)(base + l.stack_off + (uint64_t)i * l.slot_size))->lang_stack =
            i % 4;
    struct cw_runtime *rt = &h->runtimes[CW_LANG_PYTHON];
    rt->status = CW_RT_WALKED;
    rt->version = 0x030b02f0;
    rt->eval_lo = 0x555500001000ull;
    rt->eval_hi = 0x555500001020ull;
    strcpy(rt->name, "CPython 3.11.2");
    h->runtimes[CW_LANG_JAVA].status = CW_RT_UNSUPPORTED;
    strcpy(h->runtimes[CW_LANG_JAVA].name, "HotSpot 17");
    memset(h->runtimes[CW_LANG_JAVA].reason, 'r',
           sizeof h->runtimes[CW_LANG_JAVA].reason); /* no NUL */

    /* Events: index i lives in slot i & (ring_cap - 1) with seq i + 1. */
    uint64_t first = s->events > s->ring_cap ? s->events - s->ring_cap : 0;
    for (uint64_t i = first; i < s->events; i++) {
        struct cw_event *ev =
            (struct cw_event *)(base + l.ring_off + (i & (s->ring_cap - 1)) * sizeof *ev);
        ev->seq = i + 1;
        ev->time_ns = h->start_mono_ns + 1000000 * i;
        ev->type = (uint16_t)(i % (CW_EV_TYPE_MAX - 1) + 1);
        ev->fd = 3 + (int32_t)(i % 3);
        ev->sid = i % 3 + 1;
        ev->tid = 4242;
        ev->stack = s->stack_cap ? (uint32_t)(i % s->stack_cap) + 1 : 0;
        ev->arg0 = (int64_t)i;
        ev->arg1 = -1;
        ev->arg2 = INT64_MIN;
        if (s->torn >= 0 && (uint64_t)s->torn < s->events - first &&
            i == s->events - 1 - (uint64_t)s->torn)
            ev->seq = 0; /* claimed, never committed: the writer died here */
    }
    return (size_t)l.size;
}

#endif

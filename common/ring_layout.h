/*
 * ring_layout.h - where each section of a new ring file goes, for every
 * recorder that makes one (the preload's shm.c, the bpf recorder's
 * bpf/ring_writer.c): one computation, so the two can never lay a file
 * out differently.
 */
#ifndef CW_RING_LAYOUT_H
#define CW_RING_LAYOUT_H

#include "shm_layout.h"

#include <string.h>

#define CW_DEFAULT_RING_MB 16
#define CW_DEFAULT_FD_CAP  131072
#define CW_DEFAULT_STACKS  16384
#define CW_MODULE_CAP      1024
#define CW_LANG_STACKS     4096
#define CW_CODES           8192
#define CW_BLOB_BYTES      (2u << 20)

static inline uint64_t cw_align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

/* The largest power of two <= v (at least 1, at most 2^30). */
static inline uint32_t cw_floor_pow2(uint64_t v)
{
    uint32_t p = 1;
    while ((uint64_t)p * 2 <= v && p < (1u << 30))
        p *= 2;
    return p;
}

/* A header with the sizes and offsets of a file of fd_cap fds, stacks of
 * depth frames and ring_mb MiB of events; identity and magic left zero. */
static inline void cw_ring_layout(struct cw_header *p, uint32_t depth, uint32_t fd_cap,
                                  uint32_t ring_mb, uint32_t sample_ms)
{
    memset(p, 0, sizeof *p);
    p->fd_cap = fd_cap;
    p->fd_entry_size = sizeof(struct cw_fd_entry);
    p->stack_cap = CW_DEFAULT_STACKS;
    p->stack_depth = depth;
    p->stack_slot_size = (uint32_t)(sizeof(struct cw_stack_slot) + 8u * depth);
    p->module_cap = CW_MODULE_CAP;
    p->module_entry_size = sizeof(struct cw_module);
    p->event_size = sizeof(struct cw_event);
    p->ring_cap = cw_floor_pow2((uint64_t)ring_mb * 1024 * 1024 / sizeof(struct cw_event));

    uint64_t off = CW_HEADER_RESERVED;
    p->fd_off = off;
    off = cw_align_up(off + (uint64_t)p->fd_cap * p->fd_entry_size, 4096);
    p->stack_off = off;
    off = cw_align_up(off + (uint64_t)p->stack_cap * p->stack_slot_size, 4096);
    p->module_off = off;
    off = cw_align_up(off + (uint64_t)p->module_cap * p->module_entry_size, 4096);
    p->ring_off = off;
    off = cw_align_up(off + (uint64_t)p->ring_cap * p->event_size, 4096);
    /* Language sections: pages are touched only in processes with a runtime. */
    p->lang_stack_cap = CW_LANG_STACKS;
    p->lang_depth = CW_LANG_DEPTH;
    p->lang_stack_slot_size = (uint32_t)(sizeof(struct cw_lang_stack_slot) +
                                         sizeof(struct cw_lang_frame) * CW_LANG_DEPTH);
    p->lang_stack_off = off;
    off = cw_align_up(off + (uint64_t)p->lang_stack_cap * p->lang_stack_slot_size, 4096);
    p->code_cap = CW_CODES;
    p->code_off = off;
    off = cw_align_up(off + (uint64_t)p->code_cap * sizeof(struct cw_code), 4096);
    p->blob_size = CW_BLOB_BYTES;
    p->blob_off = off;
    off = cw_align_up(off + p->blob_size, 4096);
    p->series_off = off;
    p->series_cap = CW_SERIES_CAP;
    p->series_stride = 1;
    off = cw_align_up(off + (uint64_t)p->series_cap * sizeof(struct cw_series_point), 4096);
    p->file_size = off;
    p->header_size = sizeof *p;
    p->sample_ms = sample_ms;
    p->next_sid = 1;
    p->version = CW_LAYOUT_VERSION;
}

#endif

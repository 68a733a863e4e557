/*
 * shm_reader.h - the one reader of closewatch ring files: opens a file
 * read-only, validates every size and offset in its header before any use,
 * and hands out copies of fd entries, stacks, modules and events. Used by the
 * analyzer, the tests and the fuzz target; nothing else parses the layout.
 */
#ifndef CW_SHM_READER_H
#define CW_SHM_READER_H

#include <stddef.h>
#include <stdint.h>

#include "shm_layout.h"

struct cw_ring {
    const uint8_t *base;
    size_t size;
    int mapped;           /* base came from mmap (cw_ring_open) */
    struct cw_header hdr; /* validated copy, strings NUL-terminated */
    char path[4096];
};

/* Error codes, also used for exit-status decisions. */
enum cw_ring_err {
    CW_RING_OK = 0,
    CW_RING_EIO,      /* cannot open/stat/map the file */
    CW_RING_EFOREIGN, /* not a closewatch ring (magic) */
    CW_RING_EVERSION, /* a layout version we do not read */
    CW_RING_EOWNER,   /* owned by another user */
    CW_RING_ECORRUPT, /* a field out of bounds */
    CW_RING_ETRUNC,   /* shorter than its header says */
    CW_RING_EUNINIT,  /* empty, or an all-zero header: its process died before
                         writing it (a warning, not an input error) */
};

/*
 * Opens and validates path. On failure returns an error code and writes a
 * one-line message naming the file, the field and what was expected to err.
 */
int cw_ring_open(struct cw_ring *r, const char *path, char *err, size_t errlen);

/* Validates a ring already in memory (tests, fuzzing). The memory must
 * outlive r. */
int cw_ring_from_memory(struct cw_ring *r, const void *base, size_t size, const char *name,
                        char *err, size_t errlen);

void cw_ring_close(struct cw_ring *r);

/* What the writer still changes in the header after the ring was opened:
 * whether its process ended (exit_state, with exit_mono_ns), its last sign
 * of life, and the counters, each read now with an atomic load (r->hdr is a
 * copy taken at open). */
struct cw_ring_live {
    uint32_t exit_state; /* enum cw_exit_state */
    uint64_t exit_mono_ns, heartbeat_mono_ns;
    uint64_t write_idx, events_dropped, stacks_dropped, fds_beyond_table, modules_dropped;
    uint32_t sockets_open;
    uint64_t lang_dropped; /* language stacks or code records that did not fit */
    uint32_t blob_used;    /* bytes of the language arena in use */
};
void cw_ring_live(const struct cw_ring *r, struct cw_ring_live *out);

/* A consistent copy of fd entry `fd`; returns 0 when fd is out of range. */
int cw_ring_fd(const struct cw_ring *r, uint32_t fd, struct cw_fd_entry *out);

/* Copies stack `id` (1-based) into pcs; returns its depth, 0 if unknown. */
int cw_ring_stack(const struct cw_ring *r, uint32_t id, uint64_t *pcs, int max);

/* The language stack id (0 = none) of stack `id`: see shm_layout.h. */
uint32_t cw_ring_stack_lang(const struct cw_ring *r, uint32_t id);

/* Copies language stack `id` (1-based) into frames, innermost first;
 * returns its depth (0 if unknown), with its language and whether the
 * runtime's stack went deeper than the ring's lang_depth. */
int cw_ring_lang_stack(const struct cw_ring *r, uint32_t id, struct cw_lang_frame *frames, int max,
                       unsigned *lang, int *truncated);

/* A copy of code record `id` (1-based) whose blob fields were checked: the
 * strings at cw_ring_blob(r, name_off) / file_off are NUL-terminated, the
 * line table lies inside the arena. 0 if not (yet) valid. */
int cw_ring_code(const struct cw_ring *r, uint32_t id, struct cw_code *out);
const uint8_t *cw_ring_blob(const struct cw_ring *r, uint32_t off);

/* A runtime found in the process (enum cw_lang): 0 if none was. */
int cw_ring_runtime(const struct cw_ring *r, unsigned lang, struct cw_runtime *out);

/* Number of module slots that may be read, and one module (0 if not ready). */
uint32_t cw_ring_module_count(const struct cw_ring *r);
int cw_ring_module(const struct cw_ring *r, uint32_t i, struct cw_module *out);

/* Copies up to max points of the count series, oldest first; returns how
 * many (0 when the ring has none, or the sampler kept rewriting it). */
int cw_ring_series(const struct cw_ring *r, struct cw_series_point *out, int max);

/* Event iteration, oldest surviving event first. */
struct cw_ring_iter {
    uint64_t next, end;
    uint64_t torn;        /* slots found being written or half-written */
    uint64_t overwritten; /* events lost to wrap-around */
};

void cw_ring_iter_begin(const struct cw_ring *r, struct cw_ring_iter *it);
/* Takes in the events written since begin (or the last extend). */
void cw_ring_iter_extend(const struct cw_ring *r, struct cw_ring_iter *it);
/* Returns 1 with *ev filled, 0 at the end. Torn slots are skipped and counted. */
int cw_ring_iter_next(const struct cw_ring *r, struct cw_ring_iter *it, struct cw_event *ev);

/* Name helpers shared by every output. */
const char *cw_event_type_name(unsigned type);
const char *cw_origin_name(unsigned origin);
const char *cw_tcp_state_name(unsigned state);
const char *cw_close_how_name(unsigned how);
const char *cw_eof_how_name(unsigned how);

#endif

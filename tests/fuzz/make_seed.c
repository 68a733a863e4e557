/*
 * make_seed.c - writes the seed corpus for the ring-reader fuzz target
 * (tests/fuzz/fuzz_ring.c). Owned by the fuzzing work.
 *
 *   make_seed OUTDIR                 small synthetic valid rings
 *   make_seed OUTDIR --shrink RING…  also real rings, shrunk below 64 KB
 *
 * Random bytes never get past the magic, version and size checks, so the
 * fuzzer needs valid rings to mutate. Every seed written is first checked
 * with the real reader: a seed the reader rejects would teach nothing.
 * Real rings are > 3 MB (16384 stack slots); --shrink keeps their header,
 * the fd entries, the stacks those and the newest events use, a few modules
 * and the newest events, re-laid out small, so the fuzzer also starts from
 * data a real writer produced.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../common/shm_reader.h"
#include "ring_build.h"

#define SEED_MAX (64 * 1024)

static uint64_t buf[SEED_MAX / 8]; /* 8-byte aligned, as a mapping would be */
static const char *outdir;
static int written;

static int save(const char *name, size_t size)
{
    struct cw_ring r;
    char err[512];
    if (size == 0 || size > SEED_MAX) {
        fprintf(stderr, "make_seed: %s: size %zu outside 1..%d\n", name, size, SEED_MAX);
        return -1;
    }
    if (cw_ring_from_memory(&r, buf, size, name, err, sizeof err) != CW_RING_OK) {
        fprintf(stderr, "make_seed: seed rejected by the reader: %s\n", err);
        return -1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", outdir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(buf, 1, size, f) != size || fclose(f) != 0) {
        fprintf(stderr, "make_seed: %s: %s\n", path, strerror(errno));
        return -1;
    }
    written++;
    return 0;
}

static int synth(const char *name, struct rb_spec s)
{
    size_t n = rb_build(buf, sizeof buf, &s);
    if (!n) {
        fprintf(stderr, "make_seed: %s: does not fit in %d bytes\n", name, SEED_MAX);
        return -1;
    }
    return save(name, n);
}

/* Re-lays out a real ring small (see the top of the file). */
static int shrink(const char *path, int index)
{
    struct cw_ring r;
    char err[512];
    if (cw_ring_open(&r, path, err, sizeof err) != CW_RING_OK) {
        fprintf(stderr, "make_seed: skipping %s\n", err);
        return 0;
    }
    const struct cw_header *oh = &r.hdr;
    if (((const struct cw_header *)r.base)->write_idx == 0) {
        /* An image that only exec'ed on (a shell, a shim) recorded nothing
         * the synthetic seeds lack. */
        cw_ring_close(&r);
        return 0;
    }

    enum { MAX_FDS = 32, MAX_EVENTS = 32, MAX_MODS = 12, MAX_STACKS = 32 };
    uint32_t fd_cap = 0;
    for (uint32_t fd = 0; fd < oh->fd_cap && fd < MAX_FDS; fd++) {
        struct cw_fd_entry e;
        if (cw_ring_fd(&r, fd, &e) && e.sid)
            fd_cap = fd + 1;
    }
    if (fd_cap == 0)
        fd_cap = 1;

    /* The newest MAX_EVENTS committed events, in a circular buffer. */
    static struct cw_event evs[MAX_EVENTS];
    uint64_t nev = 0;
    struct cw_ring_iter it;
    struct cw_event ev;
    cw_ring_iter_begin(&r, &it);
    while (cw_ring_iter_next(&r, &it, &ev))
        evs[nev++ % MAX_EVENTS] = ev;
    uint64_t keep = nev < MAX_EVENTS ? nev : MAX_EVENTS;

    /* Stack ids used by what is kept, renumbered 1..n. */
    uint32_t old_ids[MAX_STACKS];
    uint32_t nst = 0;
#define REMAP(field)                                                                               \
    do {                                                                                           \
        uint32_t id_ = (field), new_ = 0;                                                          \
        for (uint32_t k_ = 0; id_ && k_ < nst; k_++)                                               \
            if (old_ids[k_] == id_)                                                                \
                new_ = k_ + 1;                                                                     \
        if (id_ && !new_ && nst < MAX_STACKS) {                                                    \
            old_ids[nst++] = id_;                                                                  \
            new_ = nst;                                                                            \
        }                                                                                          \
        (field) = new_;                                                                            \
    } while (0)

    struct rb_spec s = rb_default();
    s.fd_cap = fd_cap;
    s.stack_depth = oh->stack_depth;
    s.stack_cap = MAX_STACKS; /* a power of two, as the reader requires */
    s.module_cap = cw_ring_module_count(&r) < MAX_MODS ? cw_ring_module_count(&r) : MAX_MODS;
    s.ring_cap = MAX_EVENTS;
    s.exit_state = oh->exit_state;
    s.events = 0;
    /* Lay out with the synthetic builder, then overwrite every section. */
    size_t size = rb_build(buf, sizeof buf, &s);
    if (!size) {
        fprintf(stderr, "make_seed: %s does not shrink below %d bytes\n", path, SEED_MAX);
        cw_ring_close(&r);
        return 0;
    }
    uint8_t *base = (uint8_t *)buf;
    struct cw_header *h = (struct cw_header *)base;
    struct cw_header lay = *h;
    *h = *oh;
    h->file_size = lay.file_size;
    h->fd_off = lay.fd_off;
    h->fd_cap = lay.fd_cap;
    h->stack_off = lay.stack_off;
    h->stack_cap = lay.stack_cap;
    h->module_off = lay.module_off;
    h->module_cap = lay.module_cap;
    h->module_count = lay.module_cap;
    h->ring_off = lay.ring_off;
    h->ring_cap = lay.ring_cap;
    h->write_idx = nev ? evs[(nev - 1) % MAX_EVENTS].seq : 0;
    /* The language sections stay the builder's (the real runtime records
     * are kept): the real ones are megabytes. */
    h->lang_stack_off = lay.lang_stack_off;
    h->lang_stack_cap = lay.lang_stack_cap;
    h->lang_stack_slot_size = lay.lang_stack_slot_size;
    h->lang_depth = lay.lang_depth;
    h->code_off = lay.code_off;
    h->code_cap = lay.code_cap;
    h->blob_off = lay.blob_off;
    h->blob_size = lay.blob_size;
    h->blob_used = lay.blob_used;

    memset(base + h->fd_off, 0, (size_t)h->fd_cap * sizeof(struct cw_fd_entry));
    for (uint32_t fd = 0; fd < fd_cap; fd++) {
        struct cw_fd_entry e;
        if (!cw_ring_fd(&r, fd, &e))
            continue;
        REMAP(e.open_stack);
        REMAP(e.eof_stack);
        REMAP(e.close_stack);
        memcpy(base + h->fd_off + (uint64_t)fd * sizeof e, &e, sizeof e);
    }
    memset(base + h->ring_off, 0, (size_t)h->ring_cap * sizeof(struct cw_event));
    for (uint64_t k = nev - keep; k < nev; k++) {
        ev = evs[k % MAX_EVENTS];
        REMAP(ev.stack);
        memcpy(base + h->ring_off + ((ev.seq - 1) & (h->ring_cap - 1)) * sizeof ev, &ev, sizeof ev);
    }
    memset(base + h->stack_off, 0, (size_t)h->stack_cap * h->stack_slot_size);
    for (uint32_t k = 0; k < nst; k++) {
        uint8_t *p = base + h->stack_off + (uint64_t)k * h->stack_slot_size;
        struct cw_stack_slot slot = {.hash = 0x51ull + old_ids[k], .ready = 1};
        slot.depth = (uint32_t)cw_ring_stack(&r, old_ids[k], (uint64_t *)(p + sizeof slot),
                                             (int)h->stack_depth);
        memcpy(p, &slot, sizeof slot);
    }
    memset(base + h->module_off, 0, (size_t)h->module_cap * sizeof(struct cw_module));
    for (uint32_t k = 0; k < h->module_cap; k++) {
        struct cw_module m;
        if (cw_ring_module(&r, k, &m))
            memcpy(base + h->module_off + (uint64_t)k * sizeof m, &m, sizeof m);
    }
#undef REMAP
    cw_ring_close(&r);

    char name[64];
    snprintf(name, sizeof name, "real-%d.ring", index);
    return save(name, size);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: make_seed OUTDIR [--shrink RING...]\n");
        return 2;
    }
    outdir = argv[1];
    if (mkdir(outdir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "make_seed: %s: %s\n", outdir, strerror(errno));
        return 1;
    }
    struct rb_spec s = rb_default();
    int bad = 0;

    bad |= synth("basic.ring", s);

    s = rb_default();
    s.events = 21; /* wrapped: 13 overwritten */
    s.exit_state = CW_EXITED;
    bad |= synth("wrapped.ring", s);

    s = rb_default();
    s.events = 7;
    s.torn = 2; /* one committed slot lost by a dying writer */
    s.exit_state = CW_EXECED;
    bad |= synth("torn.ring", s);

    s = rb_default();
    s.events = 8 * 3 + 5;
    s.torn = 0; /* the newest slot is the one being written */
    s.reverse = 1;
    bad |= synth("wrapped-torn-reversed.ring", s);

    s = rb_default();
    s.events = 0;
    s.fd_cap = 1;
    s.stack_cap = 1;
    s.stack_depth = 1;
    s.module_cap = 0;
    s.ring_cap = 1;
    bad |= synth("empty.ring", s);

    s = rb_default();
    s.stack_depth = CW_MAX_DEPTH;
    s.stack_cap = 8;
    s.module_cap = 5;
    s.gap = 24;
    s.events = 40;
    s.ring_cap = 16;
    bad |= synth("deep-gaps.ring", s);

    s = rb_default();
    s.fd_cap = 64;
    s.stack_cap = 16;
    s.module_cap = 8;
    s.ring_cap = 64;
    s.events = 100;
    s.torn = 10;
    bad |= synth("bigger.ring", s);

    int idx = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--shrink") == 0)
            continue;
        bad |= shrink(argv[i], idx++);
    }
    fprintf(stderr, "make_seed: %d seed(s) in %s\n", written, outdir);
    return bad ? 1 : 0;
}

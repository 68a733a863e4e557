/*
 * shm_reader.c - validation and iteration of ring files (see shm_reader.h).
 *
 * Nothing read from the file is used as an offset, size or index before it
 * has been checked against the mapping's real size. A live writer may change
 * the file while we read: every copy out of it is re-checked (sequence
 * numbers for events, the sid for fd entries, `ready` for stacks/modules).
 */
#include "shm_reader.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(char *err, size_t errlen, int code, const char *name, const char *fmt, ...)
{
    if (err && errlen) {
        int n = snprintf(err, errlen, "%s: ", name);
        if (n < 0 || (size_t)n >= errlen)
            n = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return code;
}

/* Whether [off, off + count * each) lies inside size, without overflow. */
static int in_bounds(uint64_t off, uint64_t count, uint64_t each, uint64_t size)
{
    if (each && count > (UINT64_MAX - off) / each)
        return 0;
    return off <= size && count * each <= size - off;
}

static int overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

static int validate(struct cw_ring *r, const char *name, char *err, size_t errlen)
{
    if (r->size < 16)
        return fail(err, errlen, CW_RING_ETRUNC, name,
                    "truncated: %zu bytes, a ring file has at least %zu", r->size,
                    sizeof(struct cw_header));
    uint64_t magic;
    memcpy(&magic, r->base, sizeof magic);
    if (magic == 0) {
        size_t n = r->size < sizeof(struct cw_header) ? r->size : sizeof(struct cw_header);
        size_t i = 0;
        while (i < n && !r->base[i])
            i++;
        if (i == n)
            return fail(err, errlen, CW_RING_EUNINIT, name,
                        "never initialised (an all-zero header): its process was killed "
                        "while it started");
    }
    if (magic != CW_MAGIC)
        return fail(err, errlen, CW_RING_EFOREIGN, name,
                    "not a closewatch ring file (magic is 0x%016llx, expected 0x%016llx)",
                    (unsigned long long)magic, (unsigned long long)CW_MAGIC);
    uint32_t version;
    memcpy(&version, r->base + offsetof(struct cw_header, version), sizeof version);
    if (version != CW_LAYOUT_VERSION)
        return fail(err, errlen, CW_RING_EVERSION, name,
                    "layout version %u, this closewatch reads version %u%s", version,
                    CW_LAYOUT_VERSION, version > CW_LAYOUT_VERSION ? " (upgrade closewatch)" : "");
    if (r->size < sizeof(struct cw_header))
        return fail(err, errlen, CW_RING_ETRUNC, name,
                    "truncated: %zu bytes, the header alone needs %zu", r->size,
                    sizeof(struct cw_header));

    struct cw_header *h = &r->hdr;
    memcpy(h, r->base, sizeof *h);
    h->exe[sizeof h->exe - 1] = 0;
    if (h->argv_len > sizeof h->argv)
        h->argv_len = sizeof h->argv;
    if (h->argv_len)
        h->argv[h->argv_len - 1] = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return fail(err, errlen, CW_RING_ECORRUPT, name, __VA_ARGS__);                         \
    } while (0)
    CHECK(h->header_size == sizeof *h, "header_size is %u, expected %zu", h->header_size,
          sizeof *h);
    if (h->file_size > r->size)
        return fail(err, errlen, CW_RING_ETRUNC, name,
                    "truncated: file_size says %llu bytes, the file has %zu",
                    (unsigned long long)h->file_size, r->size);
    CHECK(h->fd_entry_size == sizeof(struct cw_fd_entry), "fd_entry_size is %u, expected %zu",
          h->fd_entry_size, sizeof(struct cw_fd_entry));
    CHECK(h->module_entry_size == sizeof(struct cw_module), "module_entry_size is %u, expected %zu",
          h->module_entry_size, sizeof(struct cw_module));
    CHECK(h->event_size == sizeof(struct cw_event), "event_size is %u, expected %zu", h->event_size,
          sizeof(struct cw_event));
    CHECK(h->stack_depth >= 1 && h->stack_depth <= CW_MAX_DEPTH,
          "stack_depth is %u, expected 1..%d", h->stack_depth, CW_MAX_DEPTH);
    CHECK(h->stack_slot_size == sizeof(struct cw_stack_slot) + 8u * h->stack_depth,
          "stack_slot_size is %u, expected %zu for depth %u", h->stack_slot_size,
          sizeof(struct cw_stack_slot) + 8u * h->stack_depth, h->stack_depth);
    CHECK(h->stack_cap && !(h->stack_cap & (h->stack_cap - 1)),
          "stack_cap is %u, expected a power of two", h->stack_cap);
    CHECK(h->ring_cap && !(h->ring_cap & (h->ring_cap - 1)),
          "ring_cap is %u, expected a power of two", h->ring_cap);

    uint64_t size = h->file_size;
    CHECK(h->fd_off >= sizeof *h && in_bounds(h->fd_off, h->fd_cap, h->fd_entry_size, size),
          "fd table (fd_off %llu, fd_cap %u) lies outside the file (%llu bytes)",
          (unsigned long long)h->fd_off, h->fd_cap, (unsigned long long)size);
    CHECK(h->stack_off >= sizeof *h &&
              in_bounds(h->stack_off, h->stack_cap, h->stack_slot_size, size),
          "stack table (stack_off %llu, stack_cap %u) lies outside the file",
          (unsigned long long)h->stack_off, h->stack_cap);
    CHECK(h->module_off >= sizeof *h &&
              in_bounds(h->module_off, h->module_cap, h->module_entry_size, size),
          "module table (module_off %llu, module_cap %u) lies outside the file",
          (unsigned long long)h->module_off, h->module_cap);
    CHECK(h->ring_off >= sizeof *h && in_bounds(h->ring_off, h->ring_cap, h->event_size, size),
          "event ring (ring_off %llu, ring_cap %u) lies outside the file",
          (unsigned long long)h->ring_off, h->ring_cap);
    /* A recorder that keeps no language frames leaves all four at 0. */
    int no_lang = !h->lang_depth && !h->lang_stack_cap && !h->code_cap && !h->blob_size;
    if (no_lang)
        h->lang_stack_off = h->code_off = h->blob_off = 0;
    CHECK(no_lang || (h->lang_depth >= 1 && h->lang_depth <= CW_LANG_DEPTH),
          "lang_depth is %u, expected 1..%d", h->lang_depth, CW_LANG_DEPTH);
    CHECK(no_lang || h->lang_stack_slot_size == sizeof(struct cw_lang_stack_slot) +
                                                    sizeof(struct cw_lang_frame) * h->lang_depth,
          "lang_stack_slot_size is %u, expected %zu for depth %u", h->lang_stack_slot_size,
          sizeof(struct cw_lang_stack_slot) + sizeof(struct cw_lang_frame) * h->lang_depth,
          h->lang_depth);
    CHECK(no_lang || (h->lang_stack_cap && !(h->lang_stack_cap & (h->lang_stack_cap - 1))),
          "lang_stack_cap is %u, expected a power of two", h->lang_stack_cap);
    CHECK(no_lang || (h->code_cap && !(h->code_cap & (h->code_cap - 1))),
          "code_cap is %u, expected a power of two", h->code_cap);
    CHECK(no_lang ||
              (h->lang_stack_off >= sizeof *h &&
               in_bounds(h->lang_stack_off, h->lang_stack_cap, h->lang_stack_slot_size, size)),
          "language stack table (lang_stack_off %llu, lang_stack_cap %u) lies outside the file",
          (unsigned long long)h->lang_stack_off, h->lang_stack_cap);
    CHECK(no_lang || (h->code_off >= sizeof *h &&
                      in_bounds(h->code_off, h->code_cap, sizeof(struct cw_code), size)),
          "code table (code_off %llu, code_cap %u) lies outside the file",
          (unsigned long long)h->code_off, h->code_cap);
    CHECK(no_lang || (h->blob_off >= sizeof *h && in_bounds(h->blob_off, 1, h->blob_size, size)),
          "blob arena (blob_off %llu, blob_size %u) lies outside the file",
          (unsigned long long)h->blob_off, h->blob_size);
    /* No series (series_cap 0) is allowed: a ring built by hand has none. */
    CHECK(h->series_cap <= CW_SERIES_CAP && h->series_n <= h->series_cap &&
              (!h->series_cap ||
               (h->series_off >= sizeof *h &&
                in_bounds(h->series_off, h->series_cap, sizeof(struct cw_series_point), size))),
          "count series (series_off %llu, series_cap %u, series_n %u) lies outside the file",
          (unsigned long long)h->series_off, h->series_cap, h->series_n);
    /* The messages name the offending field, as shm_reader.h promises:
     * "a section" alone does not tell which writer bug to look for. */
    const struct {
        const char *field;
        uint64_t off, len;
    } sec[] = {
        {"fd_off", h->fd_off, (uint64_t)h->fd_cap * h->fd_entry_size},
        {"stack_off", h->stack_off, (uint64_t)h->stack_cap * h->stack_slot_size},
        {"module_off", h->module_off, (uint64_t)h->module_cap * h->module_entry_size},
        {"ring_off", h->ring_off, (uint64_t)h->ring_cap * h->event_size},
        {"lang_stack_off", h->lang_stack_off,
         (uint64_t)h->lang_stack_cap * h->lang_stack_slot_size},
        {"code_off", h->code_off, (uint64_t)h->code_cap * sizeof(struct cw_code)},
        {"blob_off", h->blob_off, h->blob_size},
        {"series_off", h->series_off, (uint64_t)h->series_cap * sizeof(struct cw_series_point)},
    };
    for (size_t i = 0; i < sizeof sec / sizeof *sec; i++)
        CHECK(sec[i].off % 8 == 0, "%s %llu is not 8-byte aligned", sec[i].field,
              (unsigned long long)sec[i].off);
    for (size_t i = 0; i < sizeof sec / sizeof *sec; i++)
        for (size_t j = i + 1; j < sizeof sec / sizeof *sec; j++)
            CHECK(!overlaps(sec[i].off, sec[i].len, sec[j].off, sec[j].len),
                  "sections overlap: %s %llu (%llu bytes) and %s %llu (%llu bytes)", sec[i].field,
                  (unsigned long long)sec[i].off, (unsigned long long)sec[i].len, sec[j].field,
                  (unsigned long long)sec[j].off, (unsigned long long)sec[j].len);
    CHECK(h->exit_state <= CW_EXECED, "exit_state is %u, expected 0..2", h->exit_state);
#undef CHECK
    return CW_RING_OK;
}

int cw_ring_series(const struct cw_ring *r, struct cw_series_point *out, int max)
{
    const struct cw_header *live = (const struct cw_header *)r->base;
    const struct cw_series_point *pts =
        (const struct cw_series_point *)(r->base + r->hdr.series_off);
    /* The sampler may be adding a point or halving the series right now:
     * copy, and take the copy only if no write began or ended meanwhile. */
    for (int attempt = 0; attempt < 1000 && r->hdr.series_cap; attempt++) {
        uint32_t gen = __atomic_load_n(&live->series_gen, __ATOMIC_ACQUIRE);
        if (gen & 1)
            continue;
        uint32_t n = __atomic_load_n(&live->series_n, __ATOMIC_RELAXED);
        if (n > r->hdr.series_cap)
            return 0;
        if (n > (uint32_t)max)
            n = (uint32_t)max;
        memcpy(out, pts, n * sizeof *out);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&live->series_gen, __ATOMIC_RELAXED) == gen)
            return (int)n;
    }
    return 0;
}

int cw_ring_from_memory(struct cw_ring *r, const void *base, size_t size, const char *name,
                        char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    r->base = base;
    r->size = size;
    snprintf(r->path, sizeof r->path, "%s", name);
    return validate(r, name, err, errlen);
}

int cw_ring_open(struct cw_ring *r, const char *path, char *err, size_t errlen)
{
    memset(r, 0, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", path);
    /* O_NONBLOCK: a FIFO planted under a ring's name must not hang us. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return fail(err, errlen, CW_RING_EIO, path, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fail(err, errlen, CW_RING_EIO, path, "cannot stat: %s", strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fail(err, errlen, CW_RING_EFOREIGN, path, "not a regular file");
    }
    if (st.st_uid != getuid() && getuid() != 0) {
        close(fd);
        return fail(err, errlen, CW_RING_EOWNER, path,
                    "owned by uid %u, not by you (uid %u): refusing to read another user's ring",
                    (unsigned)st.st_uid, (unsigned)getuid());
    }
    if (st.st_size == 0) {
        close(fd);
        return fail(err, errlen, CW_RING_EUNINIT, path,
                    "never initialised (the file is empty): its process was killed while "
                    "it started");
    }
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return fail(err, errlen, CW_RING_EIO, path, "cannot map: %s", strerror(e));
    r->base = map;
    r->size = (size_t)st.st_size;
    r->mapped = 1;
    int rc = validate(r, path, err, errlen);
    if (rc != CW_RING_OK) {
        munmap(map, r->size);
        r->base = NULL;
        r->mapped = 0;
    }
    return rc;
}

void cw_ring_close(struct cw_ring *r)
{
    if (r->mapped && r->base)
        munmap((void *)r->base, r->size);
    r->base = NULL;
    r->mapped = 0;
}

void cw_ring_live(const struct cw_ring *r, struct cw_ring_live *out)
{
    memset(out, 0, sizeof *out);
    if (!r->base)
        return;
    const struct cw_header *h = (const void *)r->base;
#define LIVE(field)                                                                                \
    out->field =                                                                                   \
        atomic_load_explicit((_Atomic __typeof__(h->field) *)&h->field, memory_order_acquire)
    LIVE(exit_state);
    LIVE(exit_mono_ns);
    LIVE(heartbeat_mono_ns);
    LIVE(write_idx);
    LIVE(events_dropped);
    LIVE(stacks_dropped);
    LIVE(fds_beyond_table);
    LIVE(modules_dropped);
    LIVE(sockets_open);
    LIVE(lang_dropped);
    LIVE(blob_used);
#undef LIVE
}

int cw_ring_fd(const struct cw_ring *r, uint32_t fd, struct cw_fd_entry *out)
{
    if (!r->base || fd >= r->hdr.fd_cap)
        return 0;
    const struct cw_fd_entry *e =
        (const void *)(r->base + r->hdr.fd_off + (uint64_t)fd * r->hdr.fd_entry_size);
    for (int tries = 0; tries < 4; tries++) {
        uint64_t before = atomic_load_explicit((_Atomic uint64_t *)&e->sid, memory_order_acquire);
        memcpy(out, e, sizeof *out);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit((_Atomic uint64_t *)&e->sid, memory_order_relaxed) == before)
            break;
    }
    out->local.bytes[sizeof out->local.bytes - 1] = 0;
    out->peer.bytes[sizeof out->peer.bytes - 1] = 0;
    return 1;
}

int cw_ring_stack(const struct cw_ring *r, uint32_t id, uint64_t *pcs, int max)
{
    if (!r->base || id == 0 || id > r->hdr.stack_cap || max <= 0)
        return 0;
    const uint8_t *p = r->base + r->hdr.stack_off + (uint64_t)(id - 1) * r->hdr.stack_slot_size;
    const struct cw_stack_slot *s = (const void *)p;
    if (!atomic_load_explicit((_Atomic uint32_t *)&s->ready, memory_order_acquire))
        return 0;
    uint32_t depth = s->depth;
    if (depth > r->hdr.stack_depth)
        return 0;
    if (depth > (uint32_t)max)
        depth = (uint32_t)max;
    memcpy(pcs, p + sizeof *s, depth * sizeof *pcs);
    return (int)depth;
}

uint32_t cw_ring_stack_lang(const struct cw_ring *r, uint32_t id)
{
    if (!r->base || id == 0 || id > r->hdr.stack_cap)
        return 0;
    const struct cw_stack_slot *s =
        (const void *)(r->base + r->hdr.stack_off + (uint64_t)(id - 1) * r->hdr.stack_slot_size);
    if (!atomic_load_explicit((_Atomic uint32_t *)&s->ready, memory_order_acquire))
        return 0;
    uint32_t l = s->lang_stack;
    return l <= r->hdr.lang_stack_cap ? l : 0;
}

int cw_ring_lang_stack(const struct cw_ring *r, uint32_t id, struct cw_lang_frame *frames, int max,
                       unsigned *lang, int *truncated)
{
    if (!r->base || id == 0 || id > r->hdr.lang_stack_cap || max <= 0)
        return 0;
    const uint8_t *p =
        r->base + r->hdr.lang_stack_off + (uint64_t)(id - 1) * r->hdr.lang_stack_slot_size;
    const struct cw_lang_stack_slot *s = (const void *)p;
    if (!atomic_load_explicit((_Atomic uint32_t *)&s->ready, memory_order_acquire))
        return 0;
    uint32_t depth = s->depth;
    if (depth > r->hdr.lang_depth || s->lang == CW_LANG_NATIVE || s->lang >= CW_LANG_MAX)
        return 0;
    if (depth > (uint32_t)max)
        depth = (uint32_t)max;
    *lang = s->lang;
    *truncated = s->truncated != 0;
    memcpy(frames, p + sizeof *s, depth * sizeof *frames);
    return (int)depth;
}

/* A blob field (off, len) lies inside the claimed part of the arena and
 * ends with its NUL. */
static int blob_ok(const struct cw_ring *r, uint32_t off, uint32_t len, int nul)
{
    uint32_t used = ((const struct cw_header *)r->base)->blob_used;
    if (used > r->hdr.blob_size)
        used = r->hdr.blob_size;
    if ((uint64_t)off + len + (nul ? 1 : 0) > used)
        return 0;
    return !nul || r->base[r->hdr.blob_off + off + len] == 0;
}

int cw_ring_code(const struct cw_ring *r, uint32_t id, struct cw_code *out)
{
    if (!r->base || id == 0 || id > r->hdr.code_cap)
        return 0;
    const struct cw_code *c =
        (const void *)(r->base + r->hdr.code_off + (uint64_t)(id - 1) * sizeof *c);
    if (!atomic_load_explicit((_Atomic uint32_t *)&c->ready, memory_order_acquire))
        return 0;
    *out = *c;
    if (!blob_ok(r, out->name_off, out->name_len, 1) ||
        !blob_ok(r, out->file_off, out->file_len, 1) ||
        !blob_ok(r, out->lines_off, out->lines_len, 0) || out->lang >= CW_LANG_MAX)
        return 0;
    return 1;
}

const uint8_t *cw_ring_blob(const struct cw_ring *r, uint32_t off)
{
    return r->base + r->hdr.blob_off + off;
}

int cw_ring_runtime(const struct cw_ring *r, unsigned lang, struct cw_runtime *out)
{
    if (!r->base || lang >= CW_LANG_MAX)
        return 0;
    const struct cw_runtime *rt = &((const struct cw_header *)r->base)->runtimes[lang];
    uint32_t status = atomic_load_explicit((_Atomic uint32_t *)&rt->status, memory_order_acquire);
    if (status == CW_RT_ABSENT || status > CW_RT_UNSUPPORTED)
        return 0;
    *out = *rt;
    out->status = status;
    out->name[sizeof out->name - 1] = 0;
    out->reason[sizeof out->reason - 1] = 0;
    return 1;
}

uint32_t cw_ring_module_count(const struct cw_ring *r)
{
    if (!r->base)
        return 0;
    uint32_t n = ((const struct cw_header *)r->base)->module_count;
    return n < r->hdr.module_cap ? n : r->hdr.module_cap;
}

int cw_ring_module(const struct cw_ring *r, uint32_t i, struct cw_module *out)
{
    if (i >= cw_ring_module_count(r))
        return 0;
    const struct cw_module *m =
        (const void *)(r->base + r->hdr.module_off + (uint64_t)i * r->hdr.module_entry_size);
    if (!atomic_load_explicit((_Atomic uint32_t *)&m->ready, memory_order_acquire))
        return 0;
    memcpy(out, m, sizeof *out);
    out->path[sizeof out->path - 1] = 0;
    if (out->build_id_len > CW_BUILD_ID_MAX)
        out->build_id_len = CW_BUILD_ID_MAX;
    return 1;
}

void cw_ring_iter_begin(const struct cw_ring *r, struct cw_ring_iter *it)
{
    memset(it, 0, sizeof *it);
    if (!r->base)
        return;
    uint64_t written = atomic_load_explicit(
        (_Atomic uint64_t *)&((const struct cw_header *)r->base)->write_idx, memory_order_acquire);
    it->end = written;
    it->next = written > r->hdr.ring_cap ? written - r->hdr.ring_cap : 0;
    it->overwritten = it->next;
}

void cw_ring_iter_extend(const struct cw_ring *r, struct cw_ring_iter *it)
{
    if (!r->base)
        return;
    uint64_t written = atomic_load_explicit(
        (_Atomic uint64_t *)&((const struct cw_header *)r->base)->write_idx, memory_order_acquire);
    if (written <= it->end)
        return;
    it->end = written;
    uint64_t oldest = written > r->hdr.ring_cap ? written - r->hdr.ring_cap : 0;
    if (it->next < oldest) {
        it->overwritten += oldest - it->next;
        it->next = oldest;
    }
}

int cw_ring_iter_next(const struct cw_ring *r, struct cw_ring_iter *it, struct cw_event *ev)
{
    while (it->next < it->end) {
        uint64_t idx = it->next++;
        const struct cw_event *slot =
            (const void *)(r->base + r->hdr.ring_off +
                           (idx & (r->hdr.ring_cap - 1)) * (uint64_t)r->hdr.event_size);
        _Atomic uint64_t *seq = (_Atomic uint64_t *)&slot->seq;
        if (atomic_load_explicit(seq, memory_order_acquire) != idx + 1) {
            /* Being written, half-written by a writer that died, or already
             * overwritten by a writer that lapped us. */
            it->torn++;
            continue;
        }
        memcpy(ev, slot, sizeof *ev);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(seq, memory_order_relaxed) != idx + 1) {
            it->torn++;
            continue;
        }
        if (ev->type == CW_EV_NONE || ev->type >= CW_EV_TYPE_MAX) {
            it->torn++;
            continue;
        }
        return 1;
    }
    return 0;
}

const char *cw_event_type_name(unsigned type)
{
    static const char *const names[] = {"none",  "open",  "connect", "eof",         "shutdown",
                                        "close", "state", "error",   "double_close"};
    return type < sizeof names / sizeof *names ? names[type] : "unknown";
}

const char *cw_origin_name(unsigned origin)
{
    static const char *const names[] = {"none", "socket",    "socketpair", "accept",
                                        "dup",  "inherited", "received",   "untracked"};
    return origin < sizeof names / sizeof *names ? names[origin] : "unknown";
}

const char *cw_tcp_state_name(unsigned state)
{
    static const char *const names[] = {"UNKNOWN",    "ESTABLISHED", "SYN_SENT",  "SYN_RECV",
                                        "FIN_WAIT1",  "FIN_WAIT2",   "TIME_WAIT", "CLOSE",
                                        "CLOSE_WAIT", "LAST_ACK",    "LISTEN",    "CLOSING"};
    return state < sizeof names / sizeof *names ? names[state] : "UNKNOWN";
}

const char *cw_close_how_name(unsigned how)
{
    static const char *const names[] = {"?",      "close",   "dup2",    "close_range",
                                        "fclose", "syscall", "vanished"};
    return how < sizeof names / sizeof *names ? names[how] : "?";
}

const char *cw_eof_how_name(unsigned how)
{
    static const char *const names[] = {"?", "read", "rdhup", "hup"};
    return how < sizeof names / sizeof *names ? names[how] : "?";
}

/*
 * test_fuzz_regress.c - the ring reader on hostile input. Owned by the
 * fuzzing work (tests/fuzz/, scripts/fuzz.sh).
 *
 * Two kinds of test: every input the fuzzer ever crashed on (saved,
 * minimized, in tests/fuzz/regress/ as NAME.bin) must now be rejected with a
 * message or read to the end; and hand-made malformed rings, one defect
 * each, must get the right error code and a message naming the field, so a
 * user can tell a foreign file from a newer closewatch from a corrupt ring.
 * The rings come from tests/fuzz/ring_build.h, the builder the fuzzer's
 * seeds come from, so each case starts from a ring the reader accepts.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../analyzer/dump.h"
#include "fuzz/ring_build.h"
#include "../analyzer/lang_frames.h"
#include "harness.h"

#define HOFF(field) offsetof(struct cw_header, field)

/* A copy of exactly `size` bytes (malloc: 16-byte aligned), so that a
 * sanitized build (make ASAN=1 test) catches a read one byte past the end. */
static uint8_t *copy_of(const void *data, size_t size)
{
    uint8_t *b = malloc(size ? size : 1);
    cr_assert_not_null(b);
    if (size)
        memcpy(b, data, size);
    return b;
}

static uint8_t *build(struct rb_spec s, size_t *size)
{
    *size = rb_size(&s);
    uint8_t *b = malloc(*size);
    cr_assert_not_null(b);
    cr_assert_eq(rb_build(b, *size, &s), *size);
    return b;
}

static struct cw_header *hdr(uint8_t *b)
{
    return (struct cw_header *)b;
}

struct seen {
    uint64_t fds, stacks, modules, events, torn, overwritten;
};

/* Everything a valid ring offers, as the analyzer and the fuzz target use it. */
static struct seen read_all(const struct cw_ring *r)
{
    struct seen s = {0};
    FILE *null_out = fopen("/dev/null", "w");
    cr_assert_not_null(null_out);
    cw_dump(null_out, r);
    fclose(null_out);

    struct cw_fd_entry e;
    for (uint32_t fd = 0; fd <= r->hdr.fd_cap; fd++)
        if (cw_ring_fd(r, fd, &e) && e.sid)
            s.fds++;
    uint64_t pcs[CW_MAX_DEPTH];
    for (uint32_t id = 0; id <= r->hdr.stack_cap + 1; id++) {
        int n = cw_ring_stack(r, id, pcs, CW_MAX_DEPTH);
        cr_assert(n >= 0 && (uint32_t)n <= r->hdr.stack_depth, "stack %u depth %d", id, n);
        s.stacks += n > 0;
        static struct cw_hframe hf[CW_MAX_DEPTH + CW_LANG_DEPTH];
        int k = cw_lang_hybrid(r, id, hf, (int)(sizeof hf / sizeof *hf), NULL);
        cr_assert(k >= n && k <= n + (int)r->hdr.lang_depth, "stack %u: %d hybrid frames", id, k);
    }
    uint32_t nmods = cw_ring_module_count(r);
    cr_assert_leq(nmods, r->hdr.module_cap);
    struct cw_module m;
    for (uint32_t i = 0; i <= nmods; i++)
        if (cw_ring_module(r, i, &m)) {
            cr_assert_leq(m.build_id_len, CW_BUILD_ID_MAX);
            cr_assert_lt(strlen(m.path), sizeof m.path);
            s.modules++;
        }
    struct cw_ring_iter it;
    struct cw_event ev;
    cw_ring_iter_begin(r, &it);
    while (cw_ring_iter_next(r, &it, &ev)) {
        cr_assert(ev.type > CW_EV_NONE && ev.type < CW_EV_TYPE_MAX);
        s.events++;
    }
    cr_assert_leq(s.events, r->hdr.ring_cap);
    s.torn = it.torn;
    s.overwritten = it.overwritten;
    return s;
}

/* The contract for any input: an error with a message, or a readable ring. */
static int check_any(const void *data, size_t size, const char *name)
{
    uint8_t *b = copy_of(data, size);
    struct cw_ring r;
    char err[512] = "";
    int rc = cw_ring_from_memory(&r, b, size, name, err, sizeof err);
    if (rc == CW_RING_OK) {
        read_all(&r);
        cw_ring_close(&r);
    } else {
        cr_assert(rc > CW_RING_OK && rc <= CW_RING_EUNINIT, "%s: code %d", name, rc);
        /* More than the "name: " prefix. */
        cr_assert_gt(strlen(err), strlen(name) + 2, "%s: empty message for code %d", name, rc);
    }
    free(b);
    return rc;
}

/* Expects error `code` with every word in `words` (NULL-ended) in the message. */
static void expect_err(const uint8_t *b, size_t size, int code, const char *const *words)
{
    uint8_t *c = copy_of(b, size);
    struct cw_ring r;
    char err[512] = "";
    int rc = cw_ring_from_memory(&r, c, size, "bad.ring", err, sizeof err);
    cr_assert_eq(rc, code, "expected code %d, got %d: %s", code, rc, err);
    cr_assert(strncmp(err, "bad.ring: ", 10) == 0, "message does not name the file: %s", err);
    for (; *words; words++)
        cr_assert(strstr(err, *words), "message lacks \"%s\": %s", *words, err);
    free(c);
}
#define EXPECT(b, size, code, ...)                                                                 \
    expect_err(b, size, code, (const char *const[]){__VA_ARGS__, NULL})

static const char *regress_dir(void)
{
    static char dir[1024];
    /* CW_BUILD is <repo>/build; the inputs live in the source tree. */
    snprintf(dir, sizeof dir, "%s/../tests/fuzz/regress", h_build());
    return dir;
}

Test(fuzz_regress, saved_crash_inputs)
{
    DIR *d = opendir(regress_dir());
    if (!d) {
        cr_log_info("no %s: the fuzzer has found no crash yet", regress_dir());
        return;
    }
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len < 5 || strcmp(de->d_name + len - 4, ".bin") != 0)
            continue;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", regress_dir(), de->d_name);
        FILE *f = fopen(path, "rb");
        cr_assert_not_null(f, "%s", path);
        static uint8_t buf[1 << 20];
        size_t size = fread(buf, 1, sizeof buf, f);
        fclose(f);
        check_any(buf, size, de->d_name);
        n++;
    }
    closedir(d);
    cr_log_info("%d saved fuzz input(s) checked", n);
}

Test(fuzz_regress, valid_rings_read_back)
{
    struct rb_spec s = rb_default(); /* 16 fds, 4 stacks of depth 4, 2 modules, 8 events */
    size_t n;
    uint8_t *b = build(s, &n);
    struct cw_ring r;
    char err[512] = "";
    cr_assert_eq(cw_ring_from_memory(&r, b, n, "ok.ring", err, sizeof err), CW_RING_OK, "%s", err);
    struct seen got = read_all(&r);
    cr_assert_eq(got.fds, 4);    /* fds 3, 4, 5, 15 */
    cr_assert_eq(got.stacks, 3); /* the 4th is claimed but not ready */
    cr_assert_eq(got.modules, 2);
    cr_assert_eq(got.events, 5);
    cr_assert_eq(got.torn + got.overwritten, 0);

    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    cw_dump(out, &r);
    fclose(out);
    cr_assert(strstr(text, "fd 3 sid 1 OPEN inet/stream socket"), "%s", text);
    cr_assert(strstr(text, "unix:uuuuuuuuuuuuuuuuuuuuuuu "), "unterminated unix path: %s", text);
    cr_assert(strstr(text, "argv seed --port 8080"), "%s", text);
    free(text);
    free(b);

    /* Wrapped 13 times over with the newest slot still being written. */
    s.events = 21;
    s.torn = 0;
    s.reverse = 1;
    b = build(s, &n);
    cr_assert_eq(cw_ring_from_memory(&r, b, n, "wrapped.ring", err, sizeof err), CW_RING_OK, "%s",
                 err);
    got = read_all(&r);
    cr_assert_eq(got.overwritten, 13);
    cr_assert_eq(got.torn, 1);
    cr_assert_eq(got.events, 7);
    free(b);
}

Test(fuzz_regress, every_prefix_is_truncated)
{
    size_t n;
    uint8_t *b = build(rb_default(), &n);
    for (size_t len = 0; len < n; len++) {
        uint8_t *c = copy_of(b, len);
        struct cw_ring r;
        char err[512] = "";
        int rc = cw_ring_from_memory(&r, c, len, "short.ring", err, sizeof err);
        cr_assert_eq(rc, CW_RING_ETRUNC, "prefix of %zu bytes: code %d: %s", len, rc, err);
        cr_assert(strstr(err, "truncated"), "prefix of %zu bytes: %s", len, err);
        free(c);
    }
    cr_assert_eq(check_any(b, n, "whole.ring"), CW_RING_OK);
    free(b);
}

Test(fuzz_regress, wrong_magic_is_foreign)
{
    size_t n;
    uint8_t *b = build(rb_default(), &n);
    hdr(b)->magic ^= 1;
    EXPECT(b, n, CW_RING_EFOREIGN, "not a closewatch ring");
    /* A ring whose writer died before it stored anything: not foreign,
     * never initialised (a warning for the report, not an input error). */
    memset(b, 0, n);
    EXPECT(b, n, CW_RING_EUNINIT, "never initialised", "all-zero");
    free(b);
}

Test(fuzz_regress, other_versions_are_named)
{
    size_t n;
    uint8_t *b = build(rb_default(), &n);
    hdr(b)->version = CW_LAYOUT_VERSION + 1;
    char want[64];
    snprintf(want, sizeof want, "version %u", CW_LAYOUT_VERSION + 1);
    EXPECT(b, n, CW_RING_EVERSION, want, "upgrade");
    /* Only the magic and version of a newer ring are known to be in place:
     * its header may be any size, so even a short one says "version". */
    EXPECT(b, 16, CW_RING_EVERSION, want);
    hdr(b)->version = 0;
    EXPECT(b, n, CW_RING_EVERSION, "version 0");
    free(b);
}

Test(fuzz_regress, overlapping_sections)
{
    size_t n;
    uint8_t *b = build(rb_default(), &n);
    struct cw_header *h = hdr(b);
    uint64_t stack_off = h->stack_off;
    h->stack_off = h->fd_off + 8;
    EXPECT(b, n, CW_RING_ECORRUPT, "overlap", "fd_off", "stack_off");
    h->stack_off = stack_off;
    h->ring_off = h->module_off;
    EXPECT(b, n, CW_RING_ECORRUPT, "overlap", "module_off", "ring_off");
    free(b);
}

Test(fuzz_regress, caps_must_be_powers_of_two)
{
    size_t n;
    uint8_t *b = build(rb_default(), &n);
    hdr(b)->ring_cap = 6;
    EXPECT(b, n, CW_RING_ECORRUPT, "ring_cap", "power of two");
    hdr(b)->ring_cap = 0;
    EXPECT(b, n, CW_RING_ECORRUPT, "ring_cap");
    hdr(b)->ring_cap = 8;
    hdr(b)->stack_cap = 3;
    EXPECT(b, n, CW_RING_ECORRUPT, "stack_cap", "power of two");
    free(b);
}

Test(fuzz_regress, offsets_beyond_file_size)
{
    size_t n;
    uint8_t *b = build(rb_default(), &n);
    static const struct {
        size_t off;
        const char *name;
    } secs[] = {{HOFF(fd_off), "fd_off"},
                {HOFF(stack_off), "stack_off"},
                {HOFF(module_off), "module_off"},
                {HOFF(ring_off), "ring_off"}};
    uint64_t bad[] = {n, n + 8, UINT64_MAX - 7, 0 /* inside the header */, 8};
    for (size_t i = 0; i < sizeof secs / sizeof *secs; i++) {
        uint64_t keep;
        memcpy(&keep, b + secs[i].off, 8);
        for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
            memcpy(b + secs[i].off, &bad[k], 8);
            EXPECT(b, n, CW_RING_ECORRUPT, secs[i].name);
        }
        memcpy(b + secs[i].off, &keep, 8);
    }
    /* A cap whose table cannot fit, including one whose size overflows. */
    hdr(b)->fd_cap = UINT32_MAX;
    EXPECT(b, n, CW_RING_ECORRUPT, "fd_cap");
    hdr(b)->fd_cap = 16;
    hdr(b)->module_cap = 1000;
    EXPECT(b, n, CW_RING_ECORRUPT, "module_cap");
    hdr(b)->module_cap = 2;
    /* file_size larger than the data: the file was cut short. */
    hdr(b)->file_size = n + 1;
    EXPECT(b, n, CW_RING_ETRUNC, "truncated", "file_size");
    free(b);
}

Test(fuzz_regress, stack_depth_beyond_max)
{
    size_t n;
    uint8_t *b = build(rb_default(), &n);
    struct cw_header *h = hdr(b);
    h->stack_depth = CW_MAX_DEPTH + 1;
    h->stack_slot_size = (uint32_t)(sizeof(struct cw_stack_slot) + 8u * h->stack_depth);
    EXPECT(b, n, CW_RING_ECORRUPT, "stack_depth");
    h->stack_depth = 0;
    EXPECT(b, n, CW_RING_ECORRUPT, "stack_depth");
    h->stack_depth = UINT32_MAX; /* 8 * depth would overflow the slot size */
    EXPECT(b, n, CW_RING_ECORRUPT, "stack_depth");
    h->stack_depth = 4;
    h->stack_slot_size = (uint32_t)(sizeof(struct cw_stack_slot) + 8u * 5);
    EXPECT(b, n, CW_RING_ECORRUPT, "stack_slot_size");
    free(b);
}

Test(fuzz_regress, entry_sizes_and_states)
{
    size_t n;
    uint8_t *b = build(rb_default(), &n);
    struct cw_header *h = hdr(b);
    h->header_size += 8;
    EXPECT(b, n, CW_RING_ECORRUPT, "header_size");
    h->header_size -= 8;
    h->fd_entry_size += 8;
    EXPECT(b, n, CW_RING_ECORRUPT, "fd_entry_size");
    h->fd_entry_size -= 8;
    h->module_entry_size = 0;
    EXPECT(b, n, CW_RING_ECORRUPT, "module_entry_size");
    h->module_entry_size = sizeof(struct cw_module);
    h->event_size = 32;
    EXPECT(b, n, CW_RING_ECORRUPT, "event_size");
    h->event_size = sizeof(struct cw_event);
    h->module_off += 4;
    EXPECT(b, n, CW_RING_ECORRUPT, "module_off", "aligned");
    h->module_off -= 4;
    h->exit_state = CW_EXECED + 1;
    EXPECT(b, n, CW_RING_ECORRUPT, "exit_state");
    h->exit_state = CW_EXITED;
    cr_assert_eq(check_any(b, n, "restored.ring"), CW_RING_OK);
    free(b);
}

/* What validation cannot check (the writer changes it all the time) is
 * clamped where it is read. */
Test(fuzz_regress, live_fields_are_clamped)
{
    struct rb_spec s = rb_default();
    size_t n;
    uint8_t *b = build(s, &n);
    struct cw_header *h = hdr(b);
    h->write_idx = UINT64_MAX; /* a writer far ahead: only ring_cap slots exist */
    h->module_count = UINT32_MAX;
    h->argv_len = UINT32_MAX;
    memset(h->exe, 'e', sizeof h->exe);
    memset(h->argv, 'a', sizeof h->argv);
    struct cw_stack_slot *slot = (struct cw_stack_slot *)(b + h->stack_off);
    slot->depth = CW_MAX_DEPTH + 100;
    struct cw_module *m = (struct cw_module *)(b + h->module_off);
    m->build_id_len = UINT32_MAX;
    memset(m->path, 'p', sizeof m->path);
    struct cw_event *ev = (struct cw_event *)(b + h->ring_off);
    ev->type = CW_EV_TYPE_MAX;
    struct cw_fd_entry *e = (struct cw_fd_entry *)(b + h->fd_off) + 3;
    e->open_stack = UINT32_MAX;
    memset(e->peer.bytes, 'x', sizeof e->peer.bytes);
    e->peer.family = AF_UNIX;

    struct cw_ring r;
    char err[512] = "";
    cr_assert_eq(cw_ring_from_memory(&r, b, n, "live.ring", err, sizeof err), CW_RING_OK, "%s",
                 err);
    cr_assert_eq(cw_ring_module_count(&r), h->module_cap);
    uint64_t pcs[CW_MAX_DEPTH];
    cr_assert_eq(cw_ring_stack(&r, 1, pcs, CW_MAX_DEPTH), 0,
                 "a depth beyond stack_depth is unknown");
    cr_assert_eq(cw_ring_stack(&r, UINT32_MAX, pcs, CW_MAX_DEPTH), 0);
    cr_assert_eq(cw_ring_stack(&r, 2, pcs, 1), 1, "a short buffer gets a short stack");
    struct seen got = read_all(&r);
    cr_assert_eq(got.overwritten, UINT64_MAX - s.ring_cap);
    cr_assert_eq(got.events, 0, "no slot holds seq UINT64_MAX - 7 .. UINT64_MAX");
    cr_assert_eq(got.torn, s.ring_cap);
    free(b);
}

Test(fuzz_regress, tiny_inputs)
{
    size_t n;
    uint8_t *b = build(rb_default(), &n);
    static const size_t sizes[] = {0, 1, 8, 12, 15, 16, sizeof(struct cw_header) - 1};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        cr_assert_eq(check_any(b, sizes[i], "tiny.ring"), CW_RING_ETRUNC, "size %zu", sizes[i]);
    free(b);
}

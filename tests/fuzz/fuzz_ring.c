/*
 * fuzz_ring.c - libFuzzer target for the ring reader (common/shm_reader.c)
 * and the raw printer (analyzer/dump.c). Owned by the fuzzing work; built
 * and run by scripts/fuzz.sh (`make fuzz`).
 *
 * Every input is a candidate ring file. When the reader accepts it, every
 * accessor is driven over its whole declared range, since a ring that
 * validates is exactly the one whose offsets the accessors then trust.
 * The tables a valid ring declares are bounded by the input size, so the
 * loops are too.
 *
 * A valid ring is >= 1.5 KB and its interesting numbers are a few dozen
 * bytes of header, so byte-level mutations alone rarely produce a ring that
 * is valid yet strange. LLVMFuzzerCustomMutator below therefore also edits
 * header fields and table entries to boundary values, and makes coherent
 * changes (a new power-of-two ring_cap, a new depth with its slot size,
 * file_size following a resize) that keep the ring past validation.
 *
 * Built with -DCW_FUZZ_STANDALONE it gets a main() that runs the same code
 * on files named on the command line (or stdin): the driver for AFL++ when
 * libFuzzer is unavailable, and a way to replay a crash with any compiler.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../analyzer/dump.h"
#include "../../analyzer/lang_frames.h"
#include "../../common/shm_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Keeps results observable so the compiler cannot drop the reads. */
static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The reader expects an aligned mapping and libFuzzer's data carries no
     * alignment promise; malloc's does (16 bytes). Exactly `size` bytes so
     * that ASan flags a read even one byte past the input. */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    if (size)
        memcpy(copy, data, size);

    static FILE *null_out;
    if (!null_out)
        null_out = fopen("/dev/null", "w");

    struct cw_ring r;
    char err[512];
    err[0] = 0;
    int rc = cw_ring_from_memory(&r, copy, size, "fuzz", err, sizeof err);
    if (rc != CW_RING_OK) {
        /* Every rejection must say why. */
        if (!err[0] || rc < 0 || rc > CW_RING_EUNINIT)
            abort();
        free(copy);
        return 0;
    }

    if (null_out)
        cw_dump(null_out, &r);

    struct cw_fd_entry e;
    for (uint32_t fd = 0; fd <= r.hdr.fd_cap; fd++) /* one past: must return 0 */
        if (cw_ring_fd(&r, fd, &e))
            sink += e.sid + e.open_stack + strlen((const char *)e.local.bytes);

    uint64_t pcs[CW_MAX_DEPTH];
    for (uint32_t id = 0; id <= r.hdr.stack_cap + 1; id++) {
        int n = cw_ring_stack(&r, id, pcs, CW_MAX_DEPTH);
        if (n < 0 || n > CW_MAX_DEPTH)
            abort();
        for (int i = 0; i < n; i++)
            sink += pcs[i];
        sink += (uint64_t)cw_ring_stack(&r, id, pcs, 1); /* a short caller buffer */
        static struct cw_hframe hf[CW_MAX_DEPTH + CW_LANG_DEPTH];
        int t, k = cw_lang_hybrid(&r, id, hf, (int)(sizeof hf / sizeof *hf), &t);
        if (k < 0 || k > (int)(sizeof hf / sizeof *hf))
            abort();
        for (int i = 0; i < k; i++)
            sink += strlen(hf[i].function) + strlen(hf[i].file) + (uint64_t)hf[i].line;
        sink += (uint64_t)cw_lang_hybrid(&r, id, hf, 2, NULL);
    }
    char why[200];
    for (unsigned lang = 0; lang <= CW_LANG_MAX; lang++)
        if (cw_lang_unsupported(&r, lang, why, sizeof why))
            sink += strlen(why);

    uint32_t nmods = cw_ring_module_count(&r);
    if (nmods > r.hdr.module_cap)
        abort();
    struct cw_module m;
    for (uint32_t i = 0; i <= nmods; i++)
        if (cw_ring_module(&r, i, &m))
            sink += m.start + m.build_id_len + strlen(m.path);

    struct cw_ring_iter it;
    struct cw_event ev;
    uint64_t got = 0;
    cw_ring_iter_begin(&r, &it);
    while (cw_ring_iter_next(&r, &it, &ev)) {
        sink += (uint64_t)ev.arg0 + strlen(cw_event_type_name(ev.type));
        got++;
    }
    /* The iterator can never return more than the ring holds. */
    if (got > r.hdr.ring_cap)
        abort();

    sink += strlen(cw_origin_name(r.hdr.exit_state)) + strlen(cw_tcp_state_name(r.hdr.pid & 0xff)) +
            strlen(cw_close_how_name(r.hdr.uid & 0xff)) +
            strlen(cw_eof_how_name(r.hdr.ppid & 0xff));
    cw_ring_close(&r);
    free(copy);
    return 0;
}

#ifndef CW_FUZZ_STANDALONE
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);

struct field {
    size_t off, len;
};
#define HF(name)                                                                                   \
    {                                                                                              \
        offsetof(struct cw_header, name), sizeof(((struct cw_header *)0)->name)                    \
    }
/* Every header number the reader checks or later trusts. */
static const struct field hfields[] = {
    HF(version),
    HF(header_size),
    HF(file_size),
    HF(exit_state),
    HF(fd_off),
    HF(fd_cap),
    HF(fd_entry_size),
    HF(stack_off),
    HF(stack_cap),
    HF(stack_slot_size),
    HF(stack_depth),
    HF(module_off),
    HF(module_cap),
    HF(module_entry_size),
    HF(ring_off),
    HF(ring_cap),
    HF(event_size),
    HF(write_idx),
    HF(module_count),
    HF(argv_len),
    HF(lang_stack_off),
    HF(lang_stack_cap),
    HF(lang_stack_slot_size),
    HF(lang_depth),
    HF(code_off),
    HF(code_cap),
    HF(blob_off),
    HF(blob_size),
    HF(blob_used),
};
enum { NHF = sizeof hfields / sizeof *hfields };

static uint64_t rnd_state;
static uint64_t rnd(void)
{
    /* xorshift64*: deterministic from libFuzzer's seed, so runs replay. */
    rnd_state ^= rnd_state >> 12;
    rnd_state ^= rnd_state << 25;
    rnd_state ^= rnd_state >> 27;
    return rnd_state * 0x2545f4914f6cdd1dull;
}

static uint64_t get(const uint8_t *d, size_t off, size_t len)
{
    uint64_t v = 0;
    memcpy(&v, d + off, len); /* little-endian, as the layout is */
    return v;
}

static void put(uint8_t *d, size_t off, size_t len, uint64_t v)
{
    memcpy(d + off, &v, len);
}

/* A value near a boundary the reader must get right. */
static uint64_t interesting(uint64_t old, size_t size)
{
    switch (rnd() % 16) {
    case 0: return 0;
    case 1: return 1;
    case 2: return old + 1;
    case 3: return old - 1;
    case 4: return old * 2;
    case 5: return old / 2;
    case 6: return (uint64_t)1 << (rnd() % 64);
    case 7: return ((uint64_t)1 << (rnd() % 64)) - 1;
    case 8: return size;
    case 9: return size - (rnd() % 64);
    case 10: return size + (rnd() % 64);
    case 11: return UINT32_MAX - (rnd() % 8);
    case 12: return UINT64_MAX - (rnd() % 8);
    case 13: return CW_MAX_DEPTH + (rnd() % 3) - 1;
    case 14: return old + (rnd() % 512) - 256;
    default: return old ^ (rnd() & 0xff);
    }
}

/* A pointer to entry i of a section the header declares, if it lies in data. */
static uint8_t *entry(uint8_t *d, size_t size, size_t off_field, size_t cap_field, size_t each,
                      uint64_t *count)
{
    uint64_t off = get(d, off_field, 8), cap = get(d, cap_field, 4);
    if (!cap || !each || off > size || (size - off) / each == 0)
        return NULL;
    uint64_t n = (size - off) / each;
    if (cap < n)
        n = cap;
    uint64_t i = rnd() % n;
    if (count)
        *count = i;
    return d + off + i * each;
}

size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
    rnd_state = ((uint64_t)seed << 1 | 1) * 0x9e3779b97f4a7c15ull;
    if (size < sizeof(struct cw_header) || rnd() % 3 == 0)
        return LLVMFuzzerMutate(data, size, max_size);
    const size_t hs = sizeof(struct cw_header);
    switch (rnd() % 8) {
    case 0:
    case 1: { /* one header number to a boundary value */
        const struct field *f = &hfields[rnd() % NHF];
        put(data, f->off, f->len, interesting(get(data, f->off, f->len), size));
        break;
    }
    case 2: { /* coherent: another power-of-two ring or stack table */
        size_t f = rnd() & 1 ? offsetof(struct cw_header, ring_cap)
                             : offsetof(struct cw_header, stack_cap);
        put(data, f, 4, (uint64_t)1 << (rnd() % 12));
        break;
    }
    case 3: { /* coherent: a new stack depth with its slot size */
        uint64_t depth = rnd() % (CW_MAX_DEPTH + 2);
        put(data, offsetof(struct cw_header, stack_depth), 4, depth);
        put(data, offsetof(struct cw_header, stack_slot_size), 4,
            sizeof(struct cw_stack_slot) + 8 * depth);
        break;
    }
    case 4: { /* resize the input; file_size usually follows */
        size_t n = hs + rnd() % (max_size - hs + 1);
        if (n > size)
            memset(data + size, (int)(rnd() & 0xff), n - size);
        size = n;
        if (rnd() % 4)
            put(data, offsetof(struct cw_header, file_size), 8, size);
        break;
    }
    case 5: { /* the writer's counters: lapped, far ahead, or just behind */
        uint64_t cap = get(data, offsetof(struct cw_header, ring_cap), 4);
        uint64_t w = rnd() % 4 == 0 ? interesting(0, size) : cap * (rnd() % 5) + rnd() % (cap + 2);
        put(data, offsetof(struct cw_header, write_idx), 8, w);
        put(data, offsetof(struct cw_header, module_count), 4, interesting(0, size));
        break;
    }
    case 6: { /* a field inside a table entry */
        uint64_t i = 0;
        uint8_t *p;
        switch (rnd() % 4) {
        case 0:
            p = entry(data, size, offsetof(struct cw_header, stack_off),
                      offsetof(struct cw_header, stack_cap),
                      get(data, offsetof(struct cw_header, stack_slot_size), 4), NULL);
            if (p) {
                put(p, offsetof(struct cw_stack_slot, depth), 4, interesting(4, size));
                put(p, offsetof(struct cw_stack_slot, ready), 4, rnd() % 3);
            }
            break;
        case 1:
            p = entry(data, size, offsetof(struct cw_header, module_off),
                      offsetof(struct cw_header, module_cap), sizeof(struct cw_module), NULL);
            if (p) {
                put(p, offsetof(struct cw_module, build_id_len), 4, interesting(20, size));
                put(p, offsetof(struct cw_module, ready), 4, rnd() % 3);
                memset(p + offsetof(struct cw_module, path), 'p', CW_PATH_MAX); /* no NUL */
            }
            break;
        case 2:
            p = entry(data, size, offsetof(struct cw_header, ring_off),
                      offsetof(struct cw_header, ring_cap), sizeof(struct cw_event), &i);
            if (p) {
                uint64_t w = get(data, offsetof(struct cw_header, write_idx), 8);
                put(p, offsetof(struct cw_event, seq), 8, rnd() & 1 ? w - (rnd() % 4) : i + 1);
                put(p, offsetof(struct cw_event, type), 2, rnd() % (CW_EV_TYPE_MAX + 2));
                put(p, offsetof(struct cw_event, stack), 4, interesting(1, size));
            }
            break;
        default:
            p = entry(data, size, offsetof(struct cw_header, fd_off),
                      offsetof(struct cw_header, fd_cap), sizeof(struct cw_fd_entry), NULL);
            if (p) {
                put(p, offsetof(struct cw_fd_entry, sid), 8, rnd() | 1);
                put(p, offsetof(struct cw_fd_entry, open_stack), 4, interesting(1, size));
                put(p, offsetof(struct cw_fd_entry, close_stack), 4,
                    get(data, offsetof(struct cw_header, stack_cap), 4) + rnd() % 3 - 1);
                put(p, offsetof(struct cw_fd_entry, local.family), 2, rnd() % 12);
                memset(p + offsetof(struct cw_fd_entry, peer.bytes), (int)(rnd() & 0xff),
                       sizeof(struct cw_addr) - offsetof(struct cw_addr, bytes));
            }
            break;
        }
        break;
    }
    default: { /* sections moved onto each other, or anywhere 8-aligned */
        static const size_t offs[] = {
            offsetof(struct cw_header, fd_off), offsetof(struct cw_header, stack_off),
            offsetof(struct cw_header, module_off), offsetof(struct cw_header, ring_off)};
        size_t a = offs[rnd() % 4], b = offs[rnd() % 4];
        uint64_t v = rnd() & 1 ? get(data, b, 8) + 8 * (rnd() % 8) : (rnd() % (size + 1)) & ~7ull;
        put(data, a, 8, v);
        break;
    }
    }
    /* Usually keep magic and version right: those checks are cheap to fail. */
    if (rnd() % 8) {
        put(data, 0, 8, CW_MAGIC);
        put(data, offsetof(struct cw_header, version), 4, CW_LAYOUT_VERSION);
    }
    return size;
}
#endif

#ifdef CW_FUZZ_STANDALONE
static int run_file(FILE *f, const char *name)
{
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            uint8_t *bigger = realloc(buf, cap *= 2);
            if (!bigger)
                free(buf);
            buf = bigger;
        }
    }
    if (!buf) {
        fprintf(stderr, "%s: out of memory\n", name);
        return 1;
    }
    LLVMFuzzerTestOneInput(buf, n);
    free(buf);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return run_file(stdin, "stdin");
    int bad = 0;
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) {
            perror(argv[i]);
            bad = 1;
            continue;
        }
        bad |= run_file(f, argv[i]);
        fclose(f);
        printf("%s: ok\n", argv[i]);
    }
    return bad;
}
#endif

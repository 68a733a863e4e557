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
 * Built with -DCW_FUZZ_STANDALONE it gets a main() that runs the same code
 * on files named on the command line (or stdin): the driver for AFL++ when
 * libFuzzer is unavailable, and a way to replay a crash with any compiler.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../analyzer/dump.h"
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
        if (!err[0] || rc < 0 || rc > CW_RING_ETRUNC)
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
    }

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
            strlen(cw_close_how_name(r.hdr.uid & 0xff)) + strlen(cw_eof_how_name(r.hdr.ppid & 0xff));
    cw_ring_close(&r);
    free(copy);
    return 0;
}

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

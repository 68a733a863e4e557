/*
 * gopclntab.c - function, file and line of a pc in a Go binary from its
 * .gopclntab section (see gopclntab.h), the table Go's runtime itself
 * walks for tracebacks, so it survives `go build -ldflags='-s -w'`, which
 * strips the DWARF and the symbol table. The layout is Go's (described in
 * its runtime/symtab.go and runtime2.go); every offset read from the file is
 * checked against the section before it is followed.
 */
#include "gopclntab.h"

#include <stdlib.h>
#include <string.h>

#define MAGIC_GO118 0xfffffff0u /* Go 1.18, 1.19 */
#define MAGIC_GO120                                                                                \
    0xfffffff1u /* Go 1.20 and later: _func gains startLine, after the fields read here */

struct cw_gopcln {
    const uint8_t *data;
    size_t size;
    int quantum;
    uint64_t nfunc, text_start;
    /* the tables, as offsets into data */
    uint64_t funcnames, cutab, filetab, pctab, functab;
};

static int u32_at(const struct cw_gopcln *t, uint64_t off, uint32_t *out)
{
    if (off > t->size || t->size - off < 4)
        return -1;
    memcpy(out, t->data + off, 4);
    return 0;
}

static int u64_at(const struct cw_gopcln *t, uint64_t off, uint64_t *out)
{
    if (off > t->size || t->size - off < 8)
        return -1;
    memcpy(out, t->data + off, 8);
    return 0;
}

/* A NUL-terminated string inside the table at off, or NULL. */
static const char *str_at(const struct cw_gopcln *t, uint64_t off)
{
    if (off >= t->size || !memchr(t->data + off, 0, t->size - off))
        return NULL;
    return (const char *)t->data + off;
}

struct cw_gopcln *cw_gopcln_open(const void *data, size_t size)
{
    struct cw_gopcln t = {.data = data, .size = size};
    uint32_t magic;
    if (u32_at(&t, 0, &magic) || (magic != MAGIC_GO118 && magic != MAGIC_GO120) || size < 8 ||
        t.data[4] || t.data[5] || t.data[7] != 8) /* pads 0, 64-bit pointers */
        return NULL;
    t.quantum = t.data[6];
    uint64_t fields[5]; /* at 16: the number of files, not needed */
    if (u64_at(&t, 8, &t.nfunc) || u64_at(&t, 24, &t.text_start))
        return NULL;
    for (int i = 0; i < 5; i++)
        if (u64_at(&t, 32 + 8 * (uint64_t)i, &fields[i]) || fields[i] >= size)
            return NULL;
    t.funcnames = fields[0];
    t.cutab = fields[1];
    t.filetab = fields[2];
    t.pctab = fields[3];
    t.functab = fields[4];
    /* nfunc+1 (entry, func) pairs of uint32: the last entry ends the text. */
    if (!t.quantum || t.nfunc == 0 || t.nfunc > (size - t.functab) / 8 - 1)
        return NULL;
    struct cw_gopcln *out = malloc(sizeof *out);
    if (out)
        *out = t;
    return out;
}

void cw_gopcln_free(struct cw_gopcln *t)
{
    free(t);
}

static int varint(const struct cw_gopcln *t, uint64_t *off, uint32_t *out)
{
    uint32_t v = 0;
    for (int shift = 0; shift < 35; shift += 7) {
        if (*off >= t->size)
            return -1;
        uint8_t b = t->data[(*off)++];
        v |= (uint32_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* The value a pc-value table (at pctab + table) gives pc in a function
 * starting at entry, or -1. Pairs of (value delta, zig-zag; pc delta in
 * quanta) from value -1 at the entry; a zero value delta after the first
 * pair ends the table. */
static int64_t pcvalue(const struct cw_gopcln *t, uint32_t table, uint64_t entry, uint64_t pc)
{
    if (!table)
        return -1;
    uint64_t off = t->pctab + table, at = entry;
    int64_t val = -1;
    for (int first = 1;; first = 0) {
        uint32_t uv, dpc;
        if (varint(t, &off, &uv) || (uv == 0 && !first) || varint(t, &off, &dpc))
            return -1;
        val += (uv & 1) ? -(int64_t)(uv >> 1) - 1 : (int64_t)(uv >> 1);
        at += (uint64_t)dpc * (uint64_t)t->quantum;
        if (pc < at)
            return val;
    }
}

int cw_gopcln_lookup(const struct cw_gopcln *t, uint64_t pc, const char **function,
                     const char **file, int *line)
{
    uint32_t first_entry, end_entry;
    if (pc < t->text_start || u32_at(t, t->functab, &first_entry) ||
        u32_at(t, t->functab + t->nfunc * 8, &end_entry))
        return -1;
    uint64_t rel = pc - t->text_start;
    if (rel < first_entry || rel >= end_entry)
        return -1;
    /* The last function whose entry is at or below pc. */
    uint64_t lo = 0, hi = t->nfunc;
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        uint32_t e;
        if (u32_at(t, t->functab + mid * 8, &e))
            return -1;
        if (e <= rel)
            lo = mid;
        else
            hi = mid;
    }
    uint32_t entry, funcoff;
    if (u32_at(t, t->functab + lo * 8, &entry) || u32_at(t, t->functab + lo * 8 + 4, &funcoff))
        return -1;
    /* _func: entryOff, nameOff, args, deferreturn, pcsp, pcfile, pcln,
     * npcdata, cuOffset (uint32 each), then in 1.20+ startLine. */
    uint64_t fn = t->functab + funcoff;
    uint32_t f[9];
    for (int i = 0; i < 9; i++)
        if (u32_at(t, fn + 4 * (uint64_t)i, &f[i]))
            return -1;
    if (f[0] != entry)
        return -1; /* not the _func this entry points at: a table we misread */
    uint64_t entry_pc = t->text_start + entry;
    *function = str_at(t, t->funcnames + f[1]);
    int64_t fileno = pcvalue(t, f[5], entry_pc, pc);
    int64_t ln = pcvalue(t, f[6], entry_pc, pc);
    uint32_t fileoff;
    *file = fileno >= 0 && !u32_at(t, t->cutab + 4 * ((uint64_t)f[8] + (uint64_t)fileno), &fileoff)
                ? str_at(t, t->filetab + fileoff)
                : NULL;
    *line = ln > 0 && ln < 1 << 30 ? (int)ln : 0;
    return *function ? 0 : -1;
}

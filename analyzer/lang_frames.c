/*
 * lang_frames.c - hybrid stacks from a ring: merges the language frames a
 * stack slot names (shm_layout.h, "Language frames") into its native pcs at
 * the runtime's evaluation-loop frames, the way memray builds hybrid Python
 * stacks, and turns each frame's position into a line with its code record's
 * line table (CPython 3.10's PEP 626 table, 3.11+'s location table; a
 * JavaScript frame's position is its line, a Java frame's its bci, looked
 * up in the method's line number table).
 */
#include "lang_frames.h"

#include <stdio.h>
#include <string.h>

const char *cw_lang_name(unsigned lang)
{
    switch (lang) {
    case CW_LANG_PYTHON: return "python";
    case CW_LANG_JAVA: return "java";
    case CW_LANG_JAVASCRIPT: return "javascript";
    default: return "c";
    }
}

/* CPython 3.10 (Objects/lnotab_notes.txt): pairs of (bytes advanced,
 * signed line delta), -128 = no line. */
static int line_310(const struct cw_code *c, const uint8_t *t, uint32_t len, uint32_t pos)
{
    int line = c->first_line;
    uint32_t addr = 0;
    for (uint32_t i = 0; i + 1 < len; i += 2) {
        uint32_t end = addr + t[i];
        int8_t delta = (int8_t)t[i + 1];
        if (delta != -128)
            line += delta;
        if (addr <= pos && pos < end)
            return delta == -128 ? 0 : line;
        addr = end;
    }
    return 0;
}

static uint32_t varint(const uint8_t *t, uint32_t len, uint32_t *i)
{
    uint32_t val = 0, shift = 0;
    while (*i < len && shift < 32) {
        uint8_t b = t[(*i)++];
        val |= (uint32_t)(b & 63) << shift;
        shift += 6;
        if (!(b & 64))
            break;
    }
    return val;
}

/* CPython 3.11+ (Objects/locations.md): entries of 1-8 code units, each
 * starting with a byte with bit 7 set: code = bits 3-6, length - 1 = bits
 * 0-2; codes 13 and 14 start with a signed varint line delta, 10-12 mean a
 * delta of code - 10, 15 is "no location", 0-9 keep the line. */
static int line_311(const struct cw_code *c, const uint8_t *t, uint32_t len, uint32_t pos)
{
    int line = c->first_line;
    uint32_t addr = 0, i = 0;
    while (i < len) {
        uint8_t b = t[i++];
        if (!(b & 128))
            return 0; /* not at an entry: a table we misread */
        unsigned code = b >> 3 & 15;
        uint32_t end = addr + 2 * ((b & 7) + 1u);
        if (code == 13 || code == 14) {
            uint32_t u = varint(t, len, &i);
            line += (u & 1) ? -(int)(u >> 1) : (int)(u >> 1);
        } else if (code >= 10 && code <= 12)
            line += (int)code - 10;
        if (addr <= pos && pos < end)
            return code == 15 ? 0 : line;
        while (i < len && !(t[i] & 128))
            i++;
        addr = end;
    }
    return 0;
}

/* Java (preload/jframes.c): (bci, line) pairs of uint32, the JVMTI line
 * number table; a bci's line is that of the entry starting nearest below
 * it (javac's tables need not be sorted). */
static int line_java(const uint8_t *t, uint32_t len, uint32_t pos)
{
    uint32_t best = 0;
    int line = 0;
    if (pos == CW_LF_POS_MASK) /* a native method */
        return 0;
    for (uint32_t i = 0; i + 8 <= len; i += 8) {
        uint32_t pair[2];
        memcpy(pair, t + i, 8);
        if (pair[0] <= pos && (!line || pair[0] >= best)) {
            best = pair[0];
            line = (int)pair[1];
        }
    }
    return line;
}

int cw_lang_line(const struct cw_code *c, const uint8_t *table, uint32_t len, uint32_t pos)
{
    if (c->lang == CW_LANG_JAVASCRIPT) /* V8 gives the line: it is the position */
        return (int)pos;
    if (c->lang == CW_LANG_JAVA)
        return table ? line_java(table, len, pos) : 0;
    if (c->lang != CW_LANG_PYTHON || !len)
        return 0;
    unsigned minor = c->version >> 16 & 0xff;
    if (c->version >> 24 != 3 || minor < 10)
        return 0;
    int line = minor == 10 ? line_310(c, table, len, pos) : line_311(c, table, len, pos);
    return line > 0 ? line : 0;
}

static void resolve(const struct cw_ring *r, const struct cw_lang_frame *f, unsigned lang,
                    struct cw_hframe *out)
{
    memset(out, 0, sizeof *out);
    out->lang = lang;
    struct cw_code c;
    if (!cw_ring_code(r, f->code, &c)) {
        snprintf(out->function, sizeof out->function, "?");
        return;
    }
    snprintf(out->function, sizeof out->function, "%s", (const char *)cw_ring_blob(r, c.name_off));
    snprintf(out->file, sizeof out->file, "%s", (const char *)cw_ring_blob(r, c.file_off));
    out->line =
        cw_lang_line(&c, cw_ring_blob(r, c.lines_off), c.lines_len, f->pos & CW_LF_POS_MASK);
}

int cw_lang_hybrid(const struct cw_ring *r, uint32_t id, struct cw_hframe *out, int max,
                   int *truncated)
{
    uint64_t pcs[CW_MAX_DEPTH];
    struct cw_lang_frame lf[CW_LANG_DEPTH];
    int nn = cw_ring_stack(r, id, pcs, CW_MAX_DEPTH), nl = 0, trunc = 0;
    unsigned lang = CW_LANG_NATIVE;
    uint32_t lid = cw_ring_stack_lang(r, id);
    if (lid)
        nl = cw_ring_lang_stack(r, lid, lf, CW_LANG_DEPTH, &lang, &trunc);
    struct cw_runtime rt = {0};
    if (nl && !cw_ring_runtime(r, lang, &rt))
        rt.eval_lo = rt.eval_hi = 0;
    if (truncated)
        *truncated = trunc;

    int n = 0, k = 0;
    for (int i = 0; i < nn && n < max; i++) {
        /* A return address lies just after its call: in (lo, hi]. */
        int eval = rt.eval_hi && pcs[i] > rt.eval_lo && pcs[i] <= rt.eval_hi;
        while (eval && k < nl && n < max) {
            resolve(r, &lf[k], lang, &out[n++]);
            if (lf[k++].pos & CW_LF_ENTRY)
                break;
        }
        if (n == max)
            break;
        memset(&out[n], 0, sizeof out[n]);
        out[n].lang = CW_LANG_NATIVE;
        out[n].pc = pcs[i];
        out[n].eval = eval;
        n++;
    }
    while (k < nl && n < max)
        resolve(r, &lf[k++], lang, &out[n++]);
    return n;
}

const char *cw_lang_unsupported(const struct cw_ring *r, unsigned lang, char *buf, size_t len)
{
    struct cw_runtime rt;
    if (!cw_ring_runtime(r, lang, &rt) || rt.status == CW_RT_ABSENT || !rt.reason[0])
        return NULL;
    snprintf(buf, len, "%s: %s", rt.name, rt.reason);
    return buf;
}

const char *cw_lang_runtime_name(const struct cw_ring *r, unsigned lang, char *buf, size_t len)
{
    struct cw_runtime rt;
    if (!cw_ring_runtime(r, lang, &rt))
        return NULL;
    snprintf(buf, len, "%s", rt.name);
    return buf;
}

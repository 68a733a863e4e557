/*
 * unwind.c - the stack walk: return addresses found with the call-frame
 * information (.eh_frame) of the loaded objects, what the frame of each
 * return address looks like worked out once for all threads.
 *
 * Why not libunwind's unw_backtrace alone: its cache of frame descriptions
 * is per thread, 256 KiB mmap'd and written in full at a thread's first walk
 * and unmapped at its exit (TLB shootdowns), and every frame of that first
 * walk takes its slow path (DWARF parsing under signal-mask calls). A server
 * with a thread per connection paid all of that per connection (issue 10:
 * 0.33 of plain throughput). What a frame looks like is a property of its
 * code address, not of the thread: one lock-free table serves every thread,
 * and a new thread's first walk costs what its hundredth does.
 *
 * Only what x86-64 code needs: the canonical frame address (CFA) is rsp or
 * rbp plus an offset, the return address and rbp are saved at offsets from
 * it (or rbp is left alone). An address in no object's call-frame
 * information (JIT code) is stepped by its frame pointer, as libunwind does.
 * Anything else (signal frames, CFA expressions, a stack realigned through
 * another register) makes cw_unwind return -1: the caller walks with
 * libunwind instead, as it always did.
 *
 * Every stack word is read through cw_stack_word (validated, remembered for
 * the walk cache in stacks.c); the object's own .eh_frame is read directly,
 * as it is mapped for as long as a return address on the stack points into
 * that object. A table entry outlives a dlclose: like libunwind's cache, it
 * assumes code does not change under an address a stack returns to.
 */
#include "cw.h"

#include <dlfcn.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GLIBC__) && __GLIBC_PREREQ(2, 35)

#define DW_RBP 6
#define DW_RSP 7
#define DW_RA  16

/* ---- a frame's rule, packed in one word ------------------------------------ */

/* bits 0-31 CFA offset, 32-47 rbp's offset from the CFA, 48-55 the return
 * address's; flags above. Never 0: 0 is an entry still being filled. */
#define R_CFA_RBP     (1ull << 56) /* CFA from rbp, else from rsp */
#define R_RBP_SAVED   (1ull << 57) /* caller's rbp at CFA + offset, else unchanged */
#define R_OUTERMOST   (1ull << 58) /* no return address: the stack ends here */
#define R_FRAME_PTR   (1ull << 59) /* no call-frame information: step by rbp */
#define R_UNSUPPORTED (1ull << 60) /* libunwind must walk this frame */
#define R_VALID       (1ull << 63)

static uint64_t rule_pack(int cfa_rbp, int64_t cfa_off, int rbp_saved, int64_t rbp_off,
                          int64_t ra_off)
{
    if (cfa_off < 0 || cfa_off > INT32_MAX || rbp_off < INT16_MIN || rbp_off > INT16_MAX ||
        ra_off < INT8_MIN || ra_off > INT8_MAX)
        return R_VALID | R_UNSUPPORTED;
    return R_VALID | (uint64_t)cfa_off | (uint64_t)(uint16_t)rbp_off << 32 |
           (uint64_t)(uint8_t)ra_off << 48 | (cfa_rbp ? R_CFA_RBP : 0) |
           (rbp_saved ? R_RBP_SAVED : 0);
}

/* ---- reading .eh_frame ------------------------------------------------------ */

struct cursor {
    const uint8_t *p, *end;
    int bad;
};

static uint64_t rd_uleb(struct cursor *c)
{
    uint64_t v = 0;
    for (unsigned shift = 0; c->p < c->end && shift < 64; shift += 7) {
        uint8_t b = *c->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    c->bad = 1;
    return 0;
}

static int64_t rd_sleb(struct cursor *c)
{
    int64_t v = 0;
    for (unsigned shift = 0; c->p < c->end && shift < 64;) {
        uint8_t b = *c->p++;
        v |= (int64_t)(b & 0x7f) << shift;
        shift += 7;
        if (!(b & 0x80)) {
            if (shift < 64 && (b & 0x40))
                v |= -((int64_t)1 << shift);
            return v;
        }
    }
    c->bad = 1;
    return 0;
}

static uint64_t rd_fixed(struct cursor *c, size_t n)
{
    uint64_t v = 0;
    if ((size_t)(c->end - c->p) < n) {
        c->bad = 1;
        return 0;
    }
    memcpy(&v, c->p, n); /* little-endian */
    c->p += n;
    return v;
}

/* A pointer in DW_EH_PE encoding enc; base is what datarel is relative to. */
static uintptr_t rd_encoded(struct cursor *c, uint8_t enc, uintptr_t base)
{
    const uint8_t *at = c->p;
    uintptr_t v;
    switch (enc & 0x0f) {
    case 0x00: v = (uintptr_t)rd_fixed(c, 8); break;
    case 0x01: v = (uintptr_t)rd_uleb(c); break;
    case 0x02: v = (uintptr_t)rd_fixed(c, 2); break;
    case 0x03: v = (uintptr_t)rd_fixed(c, 4); break;
    case 0x04: v = (uintptr_t)rd_fixed(c, 8); break;
    case 0x09: v = (uintptr_t)rd_sleb(c); break;
    case 0x0a: v = (uintptr_t)(int16_t)rd_fixed(c, 2); break;
    case 0x0b: v = (uintptr_t)(int32_t)rd_fixed(c, 4); break;
    case 0x0c: v = (uintptr_t)rd_fixed(c, 8); break;
    default: c->bad = 1; return 0;
    }
    switch (enc & 0x70) {
    case 0x00: break;
    case 0x10: v += (uintptr_t)at; break; /* pcrel */
    case 0x30: v += base; break;          /* datarel */
    default: c->bad = 1; return 0;
    }
    if (enc & 0x80) /* indirect: never used for code addresses */
        c->bad = 1;
    return v;
}

/* The FDE whose table entry starts at or below pc, from .eh_frame_hdr's
 * sorted table; NULL if pc is below all of them. */
static const uint8_t *hdr_lookup(const uint8_t *hdr, uintptr_t pc, int *bad)
{
    struct cursor c = {hdr + 4, hdr + 4 + 16, 0};
    if (hdr[0] != 1 || hdr[3] != 0x3b) { /* version 1, datarel sdata4 table */
        *bad = 1;
        return NULL;
    }
    rd_encoded(&c, hdr[1], (uintptr_t)hdr); /* eh_frame_ptr */
    c.end = c.p + 16;
    uintptr_t count = rd_encoded(&c, hdr[2], (uintptr_t)hdr);
    if (c.bad || hdr[1] == 0xff || hdr[2] == 0xff) {
        *bad = 1;
        return NULL;
    }
    const uint8_t *table = c.p;
    size_t lo = 0, hi = count;
    while (lo < hi) { /* first entry above pc */
        size_t mid = lo + (hi - lo) / 2;
        int32_t start;
        memcpy(&start, table + mid * 8, 4);
        if ((uintptr_t)hdr + (intptr_t)start <= pc)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return NULL;
    int32_t fde;
    memcpy(&fde, table + (lo - 1) * 8 + 4, 4);
    return hdr + fde;
}

/* ---- running the CFA program ----------------------------------------------- */

enum { SAME, OFFSET, UNDEF, OTHER };

struct row {
    uint64_t cfa_reg;
    int64_t cfa_off;
    int cfa_expr;
    int rbp_how, ra_how;
    int64_t rbp_off, ra_off;
};

struct cie {
    uint64_t code_align;
    int64_t data_align;
    uint8_t fde_enc;
    int signal_frame, has_aug_data;
    struct cursor insns;
};

static void set_rule(struct row *r, uint64_t reg, int how, int64_t off)
{
    if (reg == DW_RBP) {
        r->rbp_how = how;
        r->rbp_off = off;
    } else if (reg == DW_RA) {
        r->ra_how = how;
        r->ra_off = off;
    }
}

static void restore_rule(struct row *r, const struct row *init, uint64_t reg)
{
    if (reg == DW_RBP)
        set_rule(r, reg, init->rbp_how, init->rbp_off);
    else if (reg == DW_RA)
        set_rule(r, reg, init->ra_how, init->ra_off);
}

/* Runs instructions from c while the location stays at or below target.
 * Returns 0, or -1 for what this walker does not know. */
static int run_cfa(struct cursor c, uintptr_t loc, uintptr_t target, const struct cie *cie,
                   struct row *r, const struct row *init)
{
    struct row stack[8];
    int depth = 0;
    while (c.p < c.end && !c.bad) {
        uint8_t op = *c.p++;
        uint64_t reg, delta = 0;
        int advance = 0;
        if ((op & 0xc0) == 0x40) {
            delta = (op & 0x3f) * cie->code_align;
            advance = 1;
        } else if ((op & 0xc0) == 0x80) {
            set_rule(r, op & 0x3f, OFFSET, (int64_t)rd_uleb(&c) * cie->data_align);
        } else if ((op & 0xc0) == 0xc0) {
            restore_rule(r, init, op & 0x3f);
        } else {
            switch (op) {
            case 0x00: break; /* nop */
            case 0x01: {      /* set_loc */
                uintptr_t to = rd_encoded(&c, cie->fde_enc, 0);
                if (to > target)
                    return 0;
                loc = to;
                break;
            }
            case 0x02: delta = rd_fixed(&c, 1) * cie->code_align, advance = 1; break;
            case 0x03: delta = rd_fixed(&c, 2) * cie->code_align, advance = 1; break;
            case 0x04: delta = rd_fixed(&c, 4) * cie->code_align, advance = 1; break;
            case 0x05: /* offset_extended */
                reg = rd_uleb(&c);
                set_rule(r, reg, OFFSET, (int64_t)rd_uleb(&c) * cie->data_align);
                break;
            case 0x06: restore_rule(r, init, rd_uleb(&c)); break;
            case 0x07: set_rule(r, rd_uleb(&c), UNDEF, 0); break;
            case 0x08: set_rule(r, rd_uleb(&c), SAME, 0); break;
            case 0x09: /* register */
                reg = rd_uleb(&c);
                rd_uleb(&c);
                set_rule(r, reg, OTHER, 0);
                break;
            case 0x0a: /* remember_state */
                if (depth == 8)
                    return -1;
                stack[depth++] = *r;
                break;
            case 0x0b: /* restore_state */
                if (depth == 0)
                    return -1;
                *r = stack[--depth];
                break;
            case 0x0c: /* def_cfa */
                r->cfa_reg = rd_uleb(&c);
                r->cfa_off = (int64_t)rd_uleb(&c);
                r->cfa_expr = 0;
                break;
            case 0x0d:
                r->cfa_reg = rd_uleb(&c);
                r->cfa_expr = 0;
                break;
            case 0x0e: r->cfa_off = (int64_t)rd_uleb(&c); break;
            case 0x0f: /* def_cfa_expression */
                c.p += rd_uleb(&c);
                r->cfa_expr = 1;
                break;
            case 0x10: /* expression */
            case 0x16: /* val_expression */
                reg = rd_uleb(&c);
                c.p += rd_uleb(&c);
                set_rule(r, reg, OTHER, 0);
                break;
            case 0x11: /* offset_extended_sf */
                reg = rd_uleb(&c);
                set_rule(r, reg, OFFSET, rd_sleb(&c) * cie->data_align);
                break;
            case 0x12: /* def_cfa_sf */
                r->cfa_reg = rd_uleb(&c);
                r->cfa_off = rd_sleb(&c) * cie->data_align;
                r->cfa_expr = 0;
                break;
            case 0x13: r->cfa_off = rd_sleb(&c) * cie->data_align; break;
            case 0x14: /* val_offset */
                reg = rd_uleb(&c);
                rd_uleb(&c);
                set_rule(r, reg, OTHER, 0);
                break;
            case 0x15: /* val_offset_sf */
                reg = rd_uleb(&c);
                rd_sleb(&c);
                set_rule(r, reg, OTHER, 0);
                break;
            case 0x2e: rd_uleb(&c); break; /* GNU_args_size */
            case 0x2f:                     /* GNU_negative_offset_extended */
                reg = rd_uleb(&c);
                set_rule(r, reg, OFFSET, -(int64_t)rd_uleb(&c) * cie->data_align);
                break;
            default: return -1;
            }
        }
        if (advance) {
            if (loc + delta > target)
                return 0;
            loc += delta;
        }
    }
    return c.bad || c.p > c.end ? -1 : 0;
}

/* Parses the CIE at p (its length word). */
static int parse_cie(const uint8_t *p, struct cie *cie)
{
    uint32_t len;
    memcpy(&len, p, 4);
    if (len == 0 || len == 0xffffffffu)
        return -1;
    struct cursor c = {p + 8, p + 4 + len, 0};
    uint8_t version = (uint8_t)rd_fixed(&c, 1);
    const char *aug = (const char *)c.p;
    size_t aug_len = strnlen(aug, (size_t)(c.end - c.p));
    c.p += aug_len + 1;
    if (version != 1 && version != 3)
        return -1;
    if (aug[0] && aug[0] != 'z')
        return -1; /* "eh" and older forms: never emitted for x86-64 */
    cie->code_align = rd_uleb(&c);
    cie->data_align = rd_sleb(&c);
    uint64_t ra = version == 1 ? rd_fixed(&c, 1) : rd_uleb(&c);
    cie->fde_enc = 0; /* absptr */
    cie->signal_frame = 0;
    cie->has_aug_data = aug[0] == 'z';
    if (cie->has_aug_data) {
        uint64_t n = rd_uleb(&c);
        struct cursor a = {c.p, c.p + n, 0};
        for (size_t i = 1; i < aug_len && !a.bad; i++) {
            switch (aug[i]) {
            case 'R': cie->fde_enc = (uint8_t)rd_fixed(&a, 1); break;
            case 'L': rd_fixed(&a, 1); break;
            case 'P': {
                uint8_t enc = (uint8_t)rd_fixed(&a, 1);
                rd_encoded(&a, enc & 0x7f, 0); /* personality, maybe indirect */
                break;
            }
            case 'S': cie->signal_frame = 1; break;
            default: return -1;
            }
        }
        if (a.bad)
            return -1;
        c.p += n;
    }
    if (c.bad || ra != DW_RA || c.p > c.end)
        return -1;
    cie->insns = c;
    return 0;
}

/* The rule for the frame executing at pc (a return address minus one). */
static uint64_t rule_compute(uintptr_t pc)
{
    struct dl_find_object obj;
    if (_dl_find_object((void *)pc, &obj) != 0 || !obj.dlfo_eh_frame)
        return R_VALID | R_FRAME_PTR;
    int bad = 0;
    const uint8_t *fde = hdr_lookup(obj.dlfo_eh_frame, pc, &bad);
    if (bad)
        return R_VALID | R_UNSUPPORTED;
    if (!fde)
        return R_VALID | R_FRAME_PTR;
    uint32_t len, cie_off;
    memcpy(&len, fde, 4);
    memcpy(&cie_off, fde + 4, 4);
    if (len == 0 || len == 0xffffffffu || cie_off == 0)
        return R_VALID | R_UNSUPPORTED;
    struct cie cie;
    if (parse_cie(fde + 4 - cie_off, &cie) != 0 || cie.signal_frame)
        return R_VALID | R_UNSUPPORTED;
    struct cursor c = {fde + 8, fde + 4 + len, 0};
    uintptr_t begin = rd_encoded(&c, cie.fde_enc, 0);
    uintptr_t range = rd_encoded(&c, cie.fde_enc & 0x0f, 0);
    if (cie.has_aug_data)
        c.p += rd_uleb(&c);
    if (c.bad || c.p > c.end)
        return R_VALID | R_UNSUPPORTED;
    if (pc < begin || pc - begin >= range)
        return R_VALID | R_FRAME_PTR; /* in a gap between FDEs */

    struct row init = {.cfa_reg = DW_RSP, .rbp_how = SAME, .ra_how = SAME};
    if (run_cfa(cie.insns, begin, UINTPTR_MAX, &cie, &init, &init) != 0)
        return R_VALID | R_UNSUPPORTED;
    struct row r = init;
    if (run_cfa(c, begin, pc, &cie, &r, &init) != 0)
        return R_VALID | R_UNSUPPORTED;

    if (r.ra_how == UNDEF)
        return R_VALID | R_OUTERMOST;
    if (r.cfa_expr || (r.cfa_reg != DW_RSP && r.cfa_reg != DW_RBP) || r.ra_how != OFFSET ||
        (r.rbp_how != SAME && r.rbp_how != OFFSET))
        return R_VALID | R_UNSUPPORTED;
    return rule_pack(r.cfa_reg == DW_RBP, r.cfa_off, r.rbp_how == OFFSET, r.rbp_off, r.ra_off);
}

/* ---- the table all threads share ------------------------------------------- */

#define RULES  4096 /* return addresses; a server's walks visit a few hundred */
#define PROBES 8

static struct {
    _Atomic uintptr_t ra;
    _Atomic uint64_t rule;
} rules[RULES];

static uint64_t rule_for(uintptr_t ra)
{
    uint32_t h = (uint32_t)((ra * 0x9e3779b97f4a7c15ull) >> 52);
    for (uint32_t probe = 0; probe < PROBES; probe++) {
        uint32_t i = (h + probe) & (RULES - 1);
        uintptr_t key = atomic_load_explicit(&rules[i].ra, memory_order_acquire);
        if (key == ra) {
            uint64_t r = atomic_load_explicit(&rules[i].rule, memory_order_acquire);
            return r ? r : rule_compute(ra - 1); /* being filled by another thread */
        }
        if (key == 0) {
            uint64_t r = rule_compute(ra - 1);
            if (atomic_compare_exchange_strong(&rules[i].ra, &key, ra))
                atomic_store_explicit(&rules[i].rule, r, memory_order_release);
            return r;
        }
    }
    return rule_compute(ra - 1); /* table full around here: correct, only slower */
}

/* rbp is read only when a frame needs its value: code built without frame
 * pointers keeps anything in rbp (a loop counter), and every word a walk
 * reads is one the walk cache (stacks.c) must find unchanged to recall it.
 * *at: where rbp's value is saved, not read yet; 0 once *rbp holds it. */
static int rbp_value(uintptr_t *rbp, uintptr_t *at)
{
    if (*at && !cw_stack_word(*at, rbp))
        return 0;
    *at = 0;
    return 1;
}

int cw_unwind(uintptr_t fp, void **pcs, int max)
{
    uintptr_t rbp = 0, rbp_at = fp, rip, ra, cfa;
    if (!cw_stack_word(fp + 8, &rip))
        return -1;
    uintptr_t rsp = fp + 16;
    int n = 0;
    while (n < max && rip) {
        pcs[n++] = (void *)rip;
        uint64_t r = rule_for(rip);
        if (r & R_UNSUPPORTED)
            return -1;
        if (r & R_OUTERMOST)
            break;
        if (r & R_FRAME_PTR) {
            /* libunwind's guess too: a frame record at rbp, if rbp points up
             * the stack and the record points further up. */
            uintptr_t caller_rbp;
            if (!rbp_value(&rbp, &rbp_at) || rbp < rsp || !cw_stack_word(rbp, &caller_rbp) ||
                !cw_stack_word(rbp + 8, &ra) || (caller_rbp && caller_rbp <= rbp))
                break;
            cfa = rbp + 16;
            rbp = caller_rbp;
        } else {
            if ((r & R_CFA_RBP) && !rbp_value(&rbp, &rbp_at))
                break;
            cfa = (r & R_CFA_RBP ? rbp : rsp) + (uint32_t)r;
            if (!cw_stack_word(cfa + (int8_t)(r >> 48), &ra))
                break;
            if (r & R_RBP_SAVED)
                rbp_at = cfa + (int16_t)(r >> 32);
        }
        if (cfa <= rsp) /* a caller's frame is above its callee's: no loops */
            break;
        rsp = cfa;
        rip = ra;
    }
    return n;
}

#else

int cw_unwind(uintptr_t fp, void **pcs, int max)
{
    (void)fp;
    (void)pcs;
    (void)max;
    return -1;
}

#endif

/*
 * pyframes.c - CPython's own frames in every recorded stack.
 *
 * In a CPython process, each stack we record also gets the calling thread's
 * Python frames: (code object, instruction offset) pairs, innermost first,
 * interned as a language stack (shm_layout.h). Each code object is interned
 * once as a code record holding its qualname, file, first line and line
 * table, so lines are computed by the analyzer and a post-mortem still names
 * them.
 *
 * The interpreter's C API is looked up when the image starts (dlsym of what
 * the executable or libpython exports, so Debian's stripped python3 works
 * too) and its version decided at the first walk;
 * one small table of struct offsets per minor version (3.10-3.13, taken from
 * each version's internal headers) is chosen by the version it reports. Any
 * other version: native frames only, and the ring's runtime record says why.
 *
 * The thread state comes from PyGILState_GetThisThreadState (a TSS lookup
 * that works with the GIL released, as it is in every socket call CPython
 * makes). This thread is inside our hook, so its own frames do not move;
 * still, every read of interpreter memory is checked readable
 * (cw_readable: a per-thread page cache, process_vm_readv on a miss) and
 * every object's type is checked, so a layout we got wrong or a torn
 * structure gives fewer frames, never a crash or a wrong name.
 */
#include "cw.h"
#include "../common/hash.h"

#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Offsets, in bytes, in one minor version's structures (x86-64, release
 * build). -1: the field does not exist in that version. */
struct py_walker {
    unsigned minor;
    int frame_objects; /* 3.10: a chain of PyFrameObject, f_lasti an instruction index */
    int ts_frame;      /* PyThreadState: frame (3.10), cframe (3.11, 3.12), current_frame (3.13) */
    int cf_current;    /* _PyCFrame.current_frame; -1: ts_frame is the frame itself */
    int f_code, f_back, f_instr, f_owner, f_is_entry, frame_size;
    int co_code; /* 3.10: co_code (a bytes object); 3.11+: co_code_adaptive (inline) */
    int co_filename, co_name, co_firstlineno, co_linetable;
    int str_ascii, str_compact; /* sizeof PyASCIIObject, PyCompactUnicodeObject */
};

#define OWNED_BY_CSTACK 3 /* 3.12+: the entry shim an eval call pushes */
#define OB_TYPE         8
#define OB_SIZE         16
#define BYTES_DATA      32
#define STR_LENGTH      16
#define STR_STATE       32

static const struct py_walker walkers[] = {
    {.minor = 10,
     .frame_objects = 1,
     .ts_frame = 24,
     .cf_current = -1,
     .f_code = 32,
     .f_back = 24,
     .f_instr = 96,
     .f_owner = -1,
     .f_is_entry = -1,
     .frame_size = 104,
     .co_code = 48,
     .co_filename = 104,
     .co_name = 112,
     .co_firstlineno = 40,
     .co_linetable = 120,
     .str_ascii = 48,
     .str_compact = 72},
    {.minor = 11,
     .ts_frame = 56,
     .cf_current = 8,
     .f_code = 32,
     .f_back = 48,
     .f_instr = 56,
     .f_owner = 69,
     .f_is_entry = 68,
     .frame_size = 72,
     .co_code = 184,
     .co_filename = 112,
     .co_name = 128,
     .co_firstlineno = 72,
     .co_linetable = 136,
     .str_ascii = 48,
     .str_compact = 72},
    {.minor = 12,
     .ts_frame = 56,
     .cf_current = 0,
     .f_code = 0,
     .f_back = 8,
     .f_instr = 56,
     .f_owner = 70,
     .f_is_entry = -1,
     .frame_size = 72,
     .co_code = 192,
     .co_filename = 112,
     .co_name = 128,
     .co_firstlineno = 68,
     .co_linetable = 136,
     .str_ascii = 40,
     .str_compact = 56},
    {.minor = 13,
     .ts_frame = 72,
     .cf_current = -1,
     .f_code = 0,
     .f_back = 8,
     .f_instr = 56,
     .f_owner = 70,
     .f_is_entry = -1,
     .frame_size = 72,
     .co_code = 200,
     .co_filename = 112,
     .co_name = 128,
     .co_firstlineno = 68,
     .co_linetable = 136,
     .str_ascii = 40,
     .str_compact = 56},
};

enum { PY_UNKNOWN, PY_LOOKING, PY_WALK, PY_NONE };

static struct {
    _Atomic int state;
    const struct py_walker *w;
    void *(*this_thread_state)(void);
    int (*initialized)(void), (*finalizing)(void);
    uintptr_t code_type, unicode_type, bytes_type;
    struct cw_runtime rt; /* what each ring of this process is told */
    _Atomic(void *) ring; /* the ring rt was last written to */
} py;

/* ---- finding the interpreter (once, at the first walk) -------------------- */

static uint32_t version_from_string(const char *s)
{
    unsigned a = 0, b = 0, c = 0;
    if (!s || sscanf(s, "%u.%u.%u", &a, &b, &c) < 2)
        return 0;
    return a << 24 | b << 16 | c << 8 | 0xf0;
}

/* The symbols, looked up when the image starts (cw_init): a failed dlsym
 * allocates its error message with the program's malloc, which a hook
 * must not do. Only the thread-state function is asked for in a process
 * without CPython. */
static struct {
    void *this_thread_state, *eval;
    int (*initialized)(void), (*finalizing)(void);
    const unsigned long *version;     /* Py_Version, 3.11+ */
    const char *(*get_version)(void); /* Py_GetVersion, before */
    uintptr_t code_type, unicode_type, bytes_type, type_type;
} sym;

void cw_pyframes_init(void)
{
    sym.this_thread_state = dlsym(RTLD_DEFAULT, "PyGILState_GetThisThreadState");
    if (!sym.this_thread_state) {
        atomic_store(&py.state, PY_NONE);
        return;
    }
    *(void **)&sym.initialized = dlsym(RTLD_DEFAULT, "Py_IsInitialized");
    void *fin = dlsym(RTLD_DEFAULT, "Py_IsFinalizing"); /* 3.13; _Py_ before */
    *(void **)&sym.finalizing = fin ? fin : dlsym(RTLD_DEFAULT, "_Py_IsFinalizing");
    sym.version = dlsym(RTLD_DEFAULT, "Py_Version");
    if (!sym.version)
        *(void **)&sym.get_version = dlsym(RTLD_DEFAULT, "Py_GetVersion");
    sym.code_type = (uintptr_t)dlsym(RTLD_DEFAULT, "PyCode_Type");
    sym.unicode_type = (uintptr_t)dlsym(RTLD_DEFAULT, "PyUnicode_Type");
    sym.bytes_type = (uintptr_t)dlsym(RTLD_DEFAULT, "PyBytes_Type");
    sym.type_type = (uintptr_t)dlsym(RTLD_DEFAULT, "PyType_Type");
    sym.eval = dlsym(RTLD_DEFAULT, "_PyEval_EvalFrameDefault");
}

/* At the first walk: which version runs, and whether we can walk it. */
static void detect(void)
{
    if (!sym.this_thread_state) { /* not CPython (or cw_pyframes_init never ran) */
        atomic_store(&py.state, PY_NONE);
        return;
    }
    /* A program embedding CPython may make sockets before it starts the
     * interpreter, whose thread-state key is not made yet: look again at
     * the next stack. */
    if (sym.initialized && !sym.initialized()) {
        atomic_store(&py.state, PY_UNKNOWN);
        return;
    }
    uint32_t hex = sym.version       ? (uint32_t)*sym.version
                   : sym.get_version ? version_from_string(sym.get_version())
                                     : 0;
    unsigned major = hex >> 24, minor = hex >> 16 & 0xff;
    snprintf(py.rt.name, sizeof py.rt.name, "CPython %u.%u.%u", major, minor, hex >> 8 & 0xff);
    py.rt.version = hex;
    py.code_type = sym.code_type;
    py.unicode_type = sym.unicode_type;
    py.bytes_type = sym.bytes_type;
    Dl_info info;
    const ElfW(Sym) *es = NULL;
    if (sym.eval && dladdr1(sym.eval, &info, (void **)&es, RTLD_DL_SYMENT) && es && es->st_size) {
        py.rt.eval_lo = (uintptr_t)sym.eval;
        py.rt.eval_hi = (uintptr_t)sym.eval + es->st_size;
    }

    const struct py_walker *w = NULL;
    for (size_t i = 0; major == 3 && i < sizeof walkers / sizeof *walkers; i++)
        if (walkers[i].minor == minor)
            w = &walkers[i];
    if (!hex)
        snprintf(py.rt.reason, sizeof py.rt.reason,
                 "CPython of unknown version: no frame walker; native frames only");
    else if (!w)
        snprintf(py.rt.reason, sizeof py.rt.reason,
                 "no frame walker for CPython %u.%u (walkers: 3.10-3.13); native frames only",
                 major, minor);
    else if (!py.code_type || !py.unicode_type || !py.bytes_type || !sym.type_type)
        snprintf(py.rt.reason, sizeof py.rt.reason,
                 "CPython %u.%u exports no PyCode_Type/PyUnicode_Type/PyBytes_Type; native "
                 "frames only",
                 major, minor);
    /* Our offsets are those of the default build: a free-threaded (3.13t)
     * or trace-refs build moves ob_type, which every check relies on. */
    else if (*(const uintptr_t *)(py.code_type + OB_TYPE) != sym.type_type)
        snprintf(py.rt.reason, sizeof py.rt.reason,
                 "CPython %u.%u with another object layout (free-threaded or debug build); "
                 "native frames only",
                 major, minor);
    if (py.rt.reason[0]) {
        py.rt.status = CW_RT_UNSUPPORTED;
        atomic_store(&py.state, PY_NONE);
        return;
    }
    py.rt.status = CW_RT_WALKED;
    py.w = w;
    py.initialized = sym.initialized;
    py.finalizing = sym.finalizing;
    *(void **)&py.this_thread_state = sym.this_thread_state;
    atomic_store(&py.state, PY_WALK);
}

/* Tells the current ring (a fork child's is new) what was found. */
static void publish_runtime(void)
{
    struct cw_header *h = cw.hdr;
    if (!py.rt.status || atomic_load_explicit(&py.ring, memory_order_relaxed) == (void *)h)
        return;
    struct cw_runtime *rt = &h->runtimes[CW_LANG_PYTHON];
    uint32_t status = py.rt.status;
    memcpy(rt->name, py.rt.name, sizeof rt->name);
    memcpy(rt->reason, py.rt.reason, sizeof rt->reason);
    rt->version = py.rt.version;
    rt->eval_lo = py.rt.eval_lo;
    rt->eval_hi = py.rt.eval_hi;
    atomic_store_explicit((_Atomic uint32_t *)&rt->status, status, memory_order_release);
    atomic_store_explicit(&py.ring, (void *)h, memory_order_relaxed);
}

/* ---- validated reads -------------------------------------------------------- */

/* The pages one walk found readable: a walk reads the same few pages
 * (the frame chunk, a handful of code objects) again and again, and asking
 * the per-thread cache (cw_readable) for each read cost ~60 instructions
 * of the ~300 a frame took. Reset for every walk: a page stays mapped for
 * as long as we are in the hook reading objects the thread's frames own. */
#define WALK_PAGES 32 /* direct-mapped by a multiplicative hash of the page */
static __thread uintptr_t seen[WALK_PAGES] __attribute__((tls_model("initial-exec")));

static inline __attribute__((always_inline)) int page_ok(uintptr_t page)
{
    uintptr_t *slot = &seen[(page * 0x9e3779b97f4a7c15ull) >> 59];
    if (*slot == page + 1)
        return 1;
    if (!cw_readable((const void *)(page << 12), 1))
        return 0;
    *slot = page + 1;
    return 1;
}

static inline __attribute__((always_inline)) int readable(uintptr_t p, size_t n)
{
    uintptr_t first = p >> 12, last = (p + n - 1) >> 12;
    if (p + n < p)
        return 0;
    if (CW_UNLIKELY(first != last))
        for (uintptr_t page = first + 1; page <= last; page++)
            if (!page_ok(page))
                return 0;
    return page_ok(first);
}

static inline __attribute__((always_inline)) int rd(uintptr_t p, size_t n)
{
    return p && !(p & 7) && readable(p, n);
}

static uintptr_t word(uintptr_t p)
{
    return *(const uintptr_t *)p;
}

/* An object of type `type` whose first n bytes are readable. */
static int object_of(uintptr_t obj, uintptr_t type, size_t n)
{
    return rd(obj, n < 16 ? 16 : n) && word(obj + OB_TYPE) == type;
}

/* ---- the blob arena and the code table ------------------------------------- */

uint8_t *cw_blob_alloc(uint32_t n, uint32_t *off)
{
    struct cw_header *h = cw.hdr;
    uint32_t at = atomic_fetch_add((_Atomic uint32_t *)&h->blob_used, n);
    if ((uint64_t)at + n > h->blob_size)
        return NULL;
    *off = at;
    return (uint8_t *)h + h->blob_off + at;
}

static void put_utf8(char *buf, size_t *len, size_t cap, uint32_t c)
{
    char tmp[4];
    size_t n;
    if (c < 0x80)
        tmp[0] = (char)c, n = 1;
    else if (c < 0x800)
        tmp[0] = (char)(0xc0 | c >> 6), tmp[1] = (char)(0x80 | (c & 0x3f)), n = 2;
    else if (c < 0x10000)
        tmp[0] = (char)(0xe0 | c >> 12), tmp[1] = (char)(0x80 | (c >> 6 & 0x3f)),
        tmp[2] = (char)(0x80 | (c & 0x3f)), n = 3;
    else
        tmp[0] = (char)(0xf0 | c >> 18), tmp[1] = (char)(0x80 | (c >> 12 & 0x3f)),
        tmp[2] = (char)(0x80 | (c >> 6 & 0x3f)), tmp[3] = (char)(0x80 | (c & 0x3f)), n = 4;
    if (*len + n <= cap) {
        memcpy(buf + *len, tmp, n);
        *len += n;
    }
}

#define STR_MAX 400

/* A str object as UTF-8 into buf (up to STR_MAX bytes); -1 if it cannot
 * be read (not a compact str, unreadable, not a str). */
static int read_str(uintptr_t s, char *buf)
{
    const struct py_walker *w = py.w;
    if (!object_of(s, py.unicode_type, (size_t)w->str_compact))
        return -1;
    uint32_t state = *(const uint32_t *)(s + STR_STATE);
    unsigned kind = state >> 2 & 7, compact = state >> 5 & 1, ascii = state >> 6 & 1;
    intptr_t n = (intptr_t)word(s + STR_LENGTH);
    if (!compact || n < 0 || (kind != 1 && kind != 2 && kind != 4))
        return -1;
    uintptr_t data = s + (uintptr_t)(ascii ? w->str_ascii : w->str_compact);
    if (n > STR_MAX)
        n = STR_MAX;
    if (n && !readable(data, (size_t)n * kind))
        return -1;
    size_t len = 0;
    for (intptr_t i = 0; i < n; i++) {
        uint32_t c = kind == 1   ? ((const uint8_t *)data)[i]
                     : kind == 2 ? ((const uint16_t *)data)[i]
                                 : ((const uint32_t *)data)[i];
        put_utf8(buf, &len, STR_MAX, c);
    }
    return (int)len;
}

/* Copies a string (with its NUL) into the arena. */
int cw_blob_str(const char *s, int len, uint32_t *off, uint32_t *out_len)
{
    uint8_t *p = cw_blob_alloc((uint32_t)len + 1, off);
    if (!p)
        return 0;
    memcpy(p, s, (size_t)len);
    p[len] = 0;
    *out_len = (uint32_t)len;
    return 1;
}

#define LINETABLE_MAX (64u << 10)
#define CODE_PROBES   32

static struct cw_code *code_at(uint32_t i)
{
    return (struct cw_code *)((uint8_t *)cw.hdr + cw.hdr->code_off) + i;
}

/* Where a new code record's contents come from: the live code object, or
 * (in a fork child) the parent's record of it. */
struct code_src {
    uintptr_t code;
    int first_line;
    const struct cw_header *from;
    const struct cw_code *rec;
};

static int code_fill_live(struct cw_code *c, void *ctx)
{
    const struct code_src *src = ctx;
    const struct py_walker *w = py.w;
    char buf[STR_MAX];
    int n = read_str(c->key[2], buf);
    if (n < 0 || !cw_blob_str(buf, n, &c->name_off, &c->name_len))
        return 0;
    n = read_str(c->key[1], buf);
    if (n < 0 || !cw_blob_str(buf, n, &c->file_off, &c->file_len))
        return 0;
    uintptr_t lt = word(src->code + (uintptr_t)w->co_linetable);
    if (object_of(lt, py.bytes_type, BYTES_DATA)) {
        uintptr_t len = word(lt + OB_SIZE);
        if (len && len <= LINETABLE_MAX && readable(lt + BYTES_DATA, len)) {
            uint8_t *p = cw_blob_alloc((uint32_t)len, &c->lines_off);
            if (p) {
                memcpy(p, (const void *)(lt + BYTES_DATA), len);
                c->lines_len = (uint32_t)len;
            }
        }
    }
    c->lang = CW_LANG_PYTHON;
    c->version = py.rt.version;
    c->first_line = src->first_line;
    return 1;
}

/* The bytes of a blob field of the parent's ring, NULL if out of bounds. */
static const uint8_t *from_blob(const struct cw_header *h, uint32_t off, uint32_t len)
{
    uint32_t used = atomic_load_explicit((_Atomic uint32_t *)&h->blob_used, memory_order_acquire);
    if (used > h->blob_size || (uint64_t)off + len > used)
        return NULL;
    return (const uint8_t *)h + h->blob_off + off;
}

static int code_fill_copy(struct cw_code *c, void *ctx)
{
    const struct code_src *src = ctx;
    const struct cw_code *r = src->rec;
    const uint8_t *name = from_blob(src->from, r->name_off, r->name_len + 1),
                  *file = from_blob(src->from, r->file_off, r->file_len + 1),
                  *lines = from_blob(src->from, r->lines_off, r->lines_len);
    if (!name || !file || !lines ||
        !cw_blob_str((const char *)name, (int)r->name_len, &c->name_off, &c->name_len) ||
        !cw_blob_str((const char *)file, (int)r->file_len, &c->file_off, &c->file_len))
        return 0;
    uint8_t *p = r->lines_len ? cw_blob_alloc(r->lines_len, &c->lines_off) : NULL;
    if (p) {
        memcpy(p, lines, r->lines_len);
        c->lines_len = r->lines_len;
    }
    c->lang = r->lang;
    c->version = r->version;
    c->first_line = r->first_line;
    return 1;
}

/* The code record with this identity: found, or claimed (key set) and
 * filled by fill(record, ctx); 0 if the table or the arena is full. Every
 * runtime's frames share it (jsframes.c too). */
uint32_t cw_code_intern(const uint64_t key[4], int (*fill)(struct cw_code *, void *), void *ctx)
{
    uint64_t hash = CW_HASH_SEED;
    for (int i = 0; i < 4; i++)
        hash = cw_hash_step(hash, key[i]);
    hash |= 1;
    uint32_t mask = cw.hdr->code_cap - 1;
    for (uint32_t probe = 0; probe < CODE_PROBES; probe++) {
        uint32_t i = (uint32_t)(hash + probe) & mask;
        struct cw_code *c = code_at(i);
        _Atomic uint64_t *ch = (_Atomic uint64_t *)&c->hash;
        uint64_t cur = atomic_load_explicit(ch, memory_order_acquire);
        if (cur == 0 && atomic_compare_exchange_strong(ch, &cur, hash)) {
            memcpy(c->key, key, sizeof c->key);
            if (!fill(c, ctx)) {
                atomic_fetch_add((_Atomic uint64_t *)&cw.hdr->lang_dropped, 1);
                return 0; /* the slot stays claimed, never ready: shown as unknown */
            }
            atomic_store_explicit((_Atomic uint32_t *)&c->ready, 1, memory_order_release);
            return i + 1;
        }
        if (cur != hash)
            continue;
        /* Another thread filling it for the same object: take it. */
        if (!atomic_load_explicit((_Atomic uint32_t *)&c->ready, memory_order_acquire) ||
            !memcmp(c->key, key, sizeof c->key))
            return i + 1;
    }
    atomic_fetch_add((_Atomic uint64_t *)&cw.hdr->lang_dropped, 1);
    return 0;
}

/* The code record of a (validated) live code object. Its identity is
 * re-read at every hit: a code object freed and another made at its
 * address has other filename/qualname/line table objects or first line. */
static uint32_t code_id(uintptr_t code)
{
    const struct py_walker *w = py.w;
    struct code_src src = {.code = code,
                           .first_line = *(const int *)(code + (uintptr_t)w->co_firstlineno)};
    uint64_t key[4] = {
        code, word(code + (uintptr_t)w->co_filename), word(code + (uintptr_t)w->co_name),
        word(code + (uintptr_t)w->co_linetable) ^ (uint64_t)(uint32_t)src.first_line << 48};
    return cw_code_intern(key, code_fill_live, &src);
}

/* ---- the language stack table ------------------------------------------------ */

uint32_t cw_lang_intern(unsigned lang, const struct cw_lang_frame *f, int n, int truncated)
{
    struct cw_header *h = cw.hdr;
    uint64_t hash = 0x84222325cbf29ce4ull ^ (uint64_t)truncated;
    for (int i = 0; i < n; i++)
        hash = cw_hash_step(hash, (uint64_t)f[i].code << 32 | f[i].pos);
    hash |= 1;
    uint32_t mask = h->lang_stack_cap - 1;
    size_t bytes = (size_t)n * sizeof *f;
    for (uint32_t probe = 0; probe < CODE_PROBES; probe++) {
        uint32_t i = (uint32_t)(hash + probe) & mask;
        struct cw_lang_stack_slot *s =
            (void *)((uint8_t *)h + h->lang_stack_off + (size_t)i * h->lang_stack_slot_size);
        _Atomic uint64_t *sh = (_Atomic uint64_t *)&s->hash;
        uint64_t cur = atomic_load_explicit(sh, memory_order_acquire);
        if (cur == 0 && atomic_compare_exchange_strong(sh, &cur, hash)) {
            s->depth = (uint32_t)n;
            s->lang = (uint16_t)lang;
            s->truncated = (uint16_t)truncated;
            memcpy(s->frames, f, bytes);
            atomic_store_explicit((_Atomic uint32_t *)&s->ready, 1, memory_order_release);
            return i + 1;
        }
        if (cur != hash)
            continue;
        if (!atomic_load_explicit((_Atomic uint32_t *)&s->ready, memory_order_acquire) ||
            (s->depth == (uint32_t)n && !memcmp(s->frames, f, bytes)))
            return i + 1;
    }
    atomic_fetch_add((_Atomic uint64_t *)&h->lang_dropped, 1);
    return 0;
}

/* ---- the walk ------------------------------------------------------------------ */

/* The bytes of a code object we read. */
static size_t code_span(const struct py_walker *w)
{
    int m = w->co_code;
    const int f[] = {w->co_filename, w->co_name, w->co_firstlineno, w->co_linetable};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        m = f[i] > m ? f[i] : m;
    return (size_t)m + 8;
}

/* The byte offset of the frame's current instruction in its code, -1 if
 * the frame has not started (or the numbers make no sense). */
static long frame_pos(const struct py_walker *w, uintptr_t f, uintptr_t code)
{
    if (w->frame_objects) {
        int lasti = *(const int *)(f + (uintptr_t)w->f_instr);
        uintptr_t bytes = word(code + (uintptr_t)w->co_code);
        if (lasti < 0 || !object_of(bytes, py.bytes_type, BYTES_DATA))
            return -1;
        return (uintptr_t)lasti * 2 < word(bytes + OB_SIZE) ? (long)lasti * 2 : -1;
    }
    uintptr_t instr = word(f + (uintptr_t)w->f_instr), start = code + (uintptr_t)w->co_code;
    uintptr_t units = word(code + OB_SIZE);
    if (instr < start || instr - start >= units * 2 || ((instr - start) & 1))
        return -1;
    return (long)(instr - start);
}

uint32_t cw_lang_stack(void)
{
    int state = atomic_load_explicit(&py.state, memory_order_acquire);
    if (CW_UNLIKELY(state == PY_UNKNOWN)) {
        int expect = PY_UNKNOWN;
        if (!atomic_compare_exchange_strong(&py.state, &expect, PY_LOOKING))
            return 0; /* another thread is looking: this stack goes without */
        detect();
        state = atomic_load(&py.state);
    }
    if (state == PY_NONE) {
        if (CW_UNLIKELY(py.rt.status))
            publish_runtime();
        return 0;
    }
    if (state != PY_WALK)
        return 0;
    publish_runtime();

    /* Finalization frees the thread states of the threads still running
     * (daemon threads, maybe inside accept()) and unmaps their frame
     * chunks, without touching those threads' TSS: their stale thread state
     * is not ours to read. (A walk that began just before that still races
     * with it; the window is the few microseconds of our walk.) */
    if ((py.initialized && !py.initialized()) || (py.finalizing && py.finalizing()))
        return 0;
    const struct py_walker *w = py.w;
    size_t span = code_span(w);
    memset(seen, 0, sizeof seen);
    uintptr_t ts = (uintptr_t)py.this_thread_state();
    if (!rd(ts, (size_t)w->ts_frame + 8))
        return 0;
    uintptr_t f = word(ts + (uintptr_t)w->ts_frame);
    if (w->cf_current >= 0)
        f = rd(f, (size_t)w->cf_current + 8) ? word(f + (uintptr_t)w->cf_current) : 0;

    struct cw_lang_frame frames[CW_LANG_DEPTH];
    int n = 0, truncated = 0;
    uintptr_t last_code = 0;
    uint32_t last_id = 0;
    /* A loop in a corrupt chain ends here. */
    for (int hops = 0; f && hops < 4 * CW_LANG_DEPTH; hops++) {
        if (!rd(f, (size_t)w->frame_size))
            break;
        uintptr_t code = word(f + (uintptr_t)w->f_code), next = word(f + (uintptr_t)w->f_back);
        if (w->f_owner >= 0 && *(const uint8_t *)(f + (uintptr_t)w->f_owner) == OWNED_BY_CSTACK) {
            if (n)
                frames[n - 1].pos |= CW_LF_ENTRY;
            f = next;
            continue;
        }
        int entry = w->frame_objects ||
                    (w->f_is_entry >= 0 && *(const uint8_t *)(f + (uintptr_t)w->f_is_entry));
        long pos = object_of(code, py.code_type, span) ? frame_pos(w, f, code) : -1;
        if (pos >= 0) {
            if (n == CW_LANG_DEPTH) {
                truncated = 1;
                break;
            }
            /* Recursion: the same code object again, its fields just read. */
            if (code != last_code) {
                last_code = code;
                last_id = code_id(code);
            }
            frames[n].code = last_id;
            frames[n].pos = (uint32_t)pos & CW_LF_POS_MASK;
            n++;
        }
        if (entry && n)
            frames[n - 1].pos |= CW_LF_ENTRY;
        f = next;
    }
    if (!n)
        return 0;
    frames[n - 1].pos |= CW_LF_ENTRY; /* the outermost frame ends its eval call */
    return cw_lang_intern(CW_LANG_PYTHON, frames, n, truncated);
}

uint32_t cw_lang_stack_copy(const struct cw_header *from, uint32_t id)
{
    struct cw_header *h = cw.hdr;
    if (py.rt.status)
        publish_runtime();
    if (!id || id > from->lang_stack_cap || from->lang_stack_slot_size != h->lang_stack_slot_size)
        return 0;
    const struct cw_lang_stack_slot *s =
        (const void *)((const uint8_t *)from + from->lang_stack_off +
                       (size_t)(id - 1) * from->lang_stack_slot_size);
    if (!atomic_load_explicit((_Atomic uint32_t *)&s->ready, memory_order_acquire) ||
        s->depth > from->lang_depth || s->depth > CW_LANG_DEPTH || !s->depth)
        return 0;
    struct cw_lang_frame f[CW_LANG_DEPTH];
    for (uint32_t i = 0; i < s->depth; i++) {
        f[i] = s->frames[i];
        uint32_t code = f[i].code;
        f[i].code = 0;
        if (!code || code > from->code_cap)
            continue;
        const struct cw_code *rec =
            (const struct cw_code *)((const uint8_t *)from + from->code_off) + (code - 1);
        if (!atomic_load_explicit((_Atomic uint32_t *)&rec->ready, memory_order_acquire))
            continue;
        struct code_src src = {.from = from, .rec = rec};
        f[i].code = cw_code_intern(rec->key, code_fill_copy, &src);
    }
    return cw_lang_intern(s->lang, f, (int)s->depth, s->truncated);
}

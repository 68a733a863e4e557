/*
 * symbolize.c - recorded addresses to function, file and line, offline,
 * after the process that recorded them may be gone.
 *
 * Each module file is opened once with libdwfl, in a Dwfl of its own at
 * file-relative addresses (recorded address - bias), so a library mapped by
 * many processes at different places is read once. Separate debug info is
 * found the standard way (build-id and .gnu_debuglink under /usr/lib/debug).
 * Every (file, relative address) is resolved once and cached.
 *
 * Inlined frames come from the concrete DIE tree: the innermost
 * DW_TAG_inlined_subroutine containing the address and its ancestors up to
 * the DW_TAG_subprogram, each inlined DIE giving the call site of the frame
 * outside it (DW_AT_call_file/line/column), as eu-addr2line -i does. The
 * subprogram is found through a per-CU sorted index of function ranges,
 * built by one walk of the CU: dwarf_getscopes scans the CU on every call,
 * ~1 ms an address in a large CU. It remains the fallback for a CU that
 * describes code without any function ranges.
 *
 * Without DWARF, names come from the ELF symbol table, through a sorted
 * index too (dwfl_module_addrinfo scans the table on every call).
 */
#include "symbolize.h"
#include "gopclntab.h"
#include "../common/hash.h"

#include <dlfcn.h>
#include <dwarf.h>
#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHAIN_MAX       32 /* inline nesting we follow */
#define SCOPE_DEPTH_MAX 64 /* namespace/block nesting we walk: bounds hostile DWARF */
#define SRC_PATH_MAX    8192
#define FN_NESTING_MAX  8 /* function ranges inside another's we look past */

/* The signature of libstdc++'s __cxa_demangle. */
typedef char *(*cw_demangle_fn)(const char *mangled, char *buf, size_t *len, int *status);

/* Open-addressing map from a pair of integers to an integer. */
struct map_slot {
    uint64_t a, b, val;
    int used;
};

struct u64map {
    struct map_slot *slots;
    size_t cap, n; /* cap is a power of two, at most half full */
};

struct strset {
    char **slots;
    size_t cap, n;
};

/* One address range of a function, in DWARF addresses. */
struct fn_range {
    Dwarf_Addr lo, hi;
    Dwarf_Die die;
};

struct fn_index {
    struct fn_range *r;
    size_t n, cap;
};

struct sym_entry {
    Dwarf_Addr addr, size;
    const char *name; /* in the ELF file's string table */
    int rank;
    int sizeless; /* size runs to the section end: valid up to the next symbol only */
};

/* An address range of a CU (dwfl addresses), from the CU's own DW_AT_ranges. */
struct cu_range {
    Dwarf_Addr lo, hi;
    Dwarf_Off die;
};

struct sym_file {
    const char *path; /* as recorded, interned */
    Dwfl *dwfl;       /* NULL when the file cannot be used */
    Dwfl_Module *mod;
    struct u64map cus;      /* CU DIE offset -> struct fn_index * */
    struct sym_entry *syms; /* function symbols by address */
    size_t nsyms;
    int syms_built;
    struct cu_range *curanges; /* CUs by address, where .debug_aranges is missing */
    size_t ncuranges;
    int curanges_built;
    struct cw_gopcln *gopcln; /* a Go binary's own line table, NULL if none */
};

struct cw_symbolizer {
    struct strset strings;
    struct u64map files; /* interned "buildid:path" -> index in file[] */
    struct sym_file **file;
    size_t nfiles, capfiles;
    struct u64map addrs; /* (file index, relative pc) -> first frame << 8 | count */
    struct cw_sym_frame *frames;
    size_t nframes, capframes;
    const char **warnings; /* NULL-terminated */
    size_t nwarnings, capwarnings;
    cw_demangle_fn demangle;
    Dwfl_Callbacks callbacks; /* a Dwfl keeps a pointer to it */
    char *debuginfo_path;     /* NULL: the default ":.debug:/usr/lib/debug" */
};

/* ---- containers ---- */

static uint64_t hash_string(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ULL;
    }
    return cw_hash64(h);
}

static struct map_slot *map_slot_for(struct map_slot *slots, size_t cap, uint64_t a, uint64_t b)
{
    size_t mask = cap - 1;
    for (size_t i = cw_hash64(a * 0x9e3779b97f4a7c15ULL ^ b) & mask;; i = (i + 1) & mask)
        if (!slots[i].used || (slots[i].a == a && slots[i].b == b))
            return &slots[i];
}

static int map_get(const struct u64map *m, uint64_t a, uint64_t b, uint64_t *val)
{
    if (!m->cap)
        return 0;
    const struct map_slot *s = map_slot_for(m->slots, m->cap, a, b);
    if (!s->used)
        return 0;
    *val = s->val;
    return 1;
}

static int map_grow(struct u64map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    struct map_slot *slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].used)
            *map_slot_for(slots, cap, m->slots[i].a, m->slots[i].b) = m->slots[i];
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

static int map_put(struct u64map *m, uint64_t a, uint64_t b, uint64_t val)
{
    if ((m->n + 1) * 2 > m->cap && map_grow(m) < 0)
        return -1;
    struct map_slot *s = map_slot_for(m->slots, m->cap, a, b);
    if (!s->used) {
        s->used = 1;
        s->a = a;
        s->b = b;
        m->n++;
    }
    s->val = val;
    return 0;
}

static char **strset_slot(char **slots, size_t cap, const char *str)
{
    size_t mask = cap - 1;
    for (size_t i = hash_string(str) & mask;; i = (i + 1) & mask)
        if (!slots[i] || !strcmp(slots[i], str))
            return &slots[i];
}

static int strset_grow(struct strset *set)
{
    size_t cap = set->cap ? set->cap * 2 : 256;
    char **slots = calloc(cap, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t i = 0; i < set->cap; i++)
        if (set->slots[i])
            *strset_slot(slots, cap, set->slots[i]) = set->slots[i];
    free(set->slots);
    set->slots = slots;
    set->cap = cap;
    return 0;
}

/* Equal strings share one copy: the same names and files recur in every
 * stack, and callers may compare them by pointer. NULL on NULL or OOM. */
static const char *intern(struct cw_symbolizer *s, const char *str)
{
    if (!str)
        return NULL;
    if ((s->strings.n + 1) * 2 > s->strings.cap && strset_grow(&s->strings) < 0)
        return NULL;
    char **slot = strset_slot(s->strings.slots, s->strings.cap, str);
    if (!*slot) {
        if (!(*slot = strdup(str)))
            return NULL;
        s->strings.n++;
    }
    return *slot;
}

static int grow_array(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*arr, ncap * elem);
    if (!p)
        return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

/* ---- warnings ---- */

static void warn(struct cw_symbolizer *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void warn(struct cw_symbolizer *s, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    const char *w = intern(s, buf);
    if (!w)
        return;
    for (size_t i = 0; i < s->nwarnings; i++)
        if (s->warnings[i] == w)
            return;
    size_t need = s->nwarnings + 2; /* and the NULL */
    if (grow_array((void **)&s->warnings, &s->capwarnings, need, sizeof *s->warnings) < 0)
        return;
    s->warnings[s->nwarnings++] = w;
    s->warnings[s->nwarnings] = NULL;
}

const char *const *cw_symbolizer_warnings(struct cw_symbolizer *s)
{
    static const char *const none[] = {NULL};
    return s && s->warnings ? s->warnings : none;
}

/* ---- names and paths ---- */

/*
 * Looked up at run time rather than linked: the analyzer stays a C program
 * with no libstdc++ dependency, and demangles wherever libstdc++ is
 * installed, which is wherever C++ programs run. The library is never
 * closed: libstdc++ does not unload cleanly.
 */
static cw_demangle_fn find_demangler(void)
{
    void *fn = dlsym(RTLD_DEFAULT, "__cxa_demangle");
    if (!fn) {
        void *lib = dlopen("libstdc++.so.6", RTLD_LAZY | RTLD_LOCAL);
        if (lib)
            fn = dlsym(lib, "__cxa_demangle");
    }
    return (cw_demangle_fn)fn;
}

/* The demangled form of a C++ name, or NULL if it is not one. */
static const char *demangled(struct cw_symbolizer *s, const char *name)
{
    if (!s->demangle || strncmp(name, "_Z", 2))
        return NULL;
    int status = -1;
    char *plain = s->demangle(name, NULL, NULL, &status);
    const char *r = status == 0 && plain ? intern(s, plain) : NULL;
    free(plain);
    return r;
}

static const char *die_string(Dwarf_Die *die, unsigned attr)
{
    Dwarf_Attribute mem;
    /* _integrate follows DW_AT_abstract_origin and DW_AT_specification:
     * inlined and out-of-line instances carry their names there. */
    return dwarf_formstring(dwarf_attr_integrate(die, attr, &mem));
}

static const char *die_function_name(struct cw_symbolizer *s, Dwarf_Die *die)
{
    const char *linkage = die_string(die, DW_AT_linkage_name);
    if (!linkage)
        linkage = die_string(die, DW_AT_MIPS_linkage_name);
    const char *pretty = linkage ? demangled(s, linkage) : NULL;
    if (pretty)
        return pretty;
    const char *name = die_string(die, DW_AT_name);
    return intern(s, name ? name : linkage);
}

/* Lexically, since the sources need not exist on this machine. `in` is
 * absolute; out holds at least strlen(in) + 2 bytes. */
static void normalize_path(const char *in, char *out)
{
    size_t w = 0;
    while (*in) {
        while (*in == '/')
            in++;
        size_t len = strcspn(in, "/");
        if (len == 0)
            break;
        if (len == 2 && in[0] == '.' && in[1] == '.') {
            while (w > 0 && out[--w] != '/')
                ;
        } else if (!(len == 1 && in[0] == '.')) {
            out[w++] = '/';
            memcpy(out + w, in, len);
            w += len;
        }
        in += len;
    }
    if (w == 0)
        out[w++] = '/';
    out[w] = '\0';
}

static const char *source_path(struct cw_symbolizer *s, const char *src, const char *comp_dir)
{
    char joined[SRC_PATH_MAX], clean[SRC_PATH_MAX + 2];
    if (src[0] != '/') {
        if (!comp_dir || comp_dir[0] != '/' ||
            snprintf(joined, sizeof joined, "%s/%s", comp_dir, src) >= (int)sizeof joined)
            return intern(s, src);
        src = joined;
    } else if (strlen(src) >= SRC_PATH_MAX) {
        return intern(s, src);
    }
    normalize_path(src, clean);
    return intern(s, clean);
}

/* ---- module files ---- */

/* Names the kernel gives mappings that have no file behind them. */
static int is_fileless(const char *path)
{
    return !*path || !strncmp(path, "linux-vdso", 10) || !strncmp(path, "linux-gate", 10) ||
           (path[0] == '[' && strchr(path, ']'));
}

/*
 * Opens the file without blocking (a path now naming a FIFO must not hang
 * the analyzer). An executable deleted while running was recorded from
 * /proc/self/exe with " (deleted)" appended: its replacement, if any, is
 * tried, and the build-id check tells whether it is the same file.
 */
static int open_module_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    static const char deleted[] = " (deleted)";
    size_t n = strlen(path), dl = sizeof deleted - 1;
    if (fd < 0 && errno == ENOENT && n > dl && !strcmp(path + n - dl, deleted)) {
        char live[CW_PATH_MAX + 1];
        snprintf(live, sizeof live, "%.*s", (int)(n - dl), path);
        fd = open(live, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
            errno = ENOENT;
    }
    return fd;
}

static int attach_elf(struct cw_symbolizer *s, struct sym_file *f)
{
    int fd = open_module_file(f->path);
    if (fd < 0) {
        warn(s, "%s: cannot open: %s; its frames show the module only", f->path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        warn(s, "%s: not a regular file; its frames show the module only", f->path);
        close(fd);
        return -1;
    }
    f->dwfl = dwfl_begin(&s->callbacks);
    if (!f->dwfl) {
        close(fd);
        return -1;
    }
    dwfl_report_begin(f->dwfl);
    /* Base 0 with add_p_vaddr places an ET_DYN file at its link addresses,
     * where an ET_EXEC file always is: dwfl addresses are then recorded
     * address - dlpi_addr for both. */
    f->mod = dwfl_report_elf(f->dwfl, f->path, f->path, fd, 0, true);
    if (!f->mod) {
        warn(s, "%s: cannot read as ELF: %s; its frames show the module only", f->path,
             dwfl_errmsg(-1));
        close(fd); /* only consumed on success */
        dwfl_end(f->dwfl);
        f->dwfl = NULL;
        return -1;
    }
    dwfl_report_end(f->dwfl, NULL, NULL);
    return 0;
}

static void check_build_id(struct cw_symbolizer *s, struct sym_file *f, const uint8_t *id,
                           uint32_t idlen)
{
    const unsigned char *bits = NULL;
    GElf_Addr vaddr;
    if (idlen == 0)
        return; /* the recorder found none: nothing to compare */
    int len = dwfl_module_build_id(f->mod, &bits, &vaddr);
    /* The recorder keeps at most CW_BUILD_ID_MAX bytes. */
    uint32_t have = len > 0 ? (uint32_t)len : 0;
    if (have > CW_BUILD_ID_MAX)
        have = CW_BUILD_ID_MAX;
    if (have != idlen || memcmp(bits, id, idlen))
        warn(s,
             "%s: build-id differs from the recorded one: the binary changed since it ran; "
             "source lines may be wrong",
             f->path);
}

/* A Go binary's .gopclntab, read when it has no DWARF (a stripped build). */
static struct cw_gopcln *open_gopcln(Dwfl_Module *mod)
{
    GElf_Addr bias;
    Elf *elf = dwfl_module_getelf(mod, &bias);
    size_t shstrndx;
    if (!elf || elf_getshdrstrndx(elf, &shstrndx) != 0)
        return NULL;
    for (Elf_Scn *scn = NULL; (scn = elf_nextscn(elf, scn));) {
        GElf_Shdr sh;
        const char *name = gelf_getshdr(scn, &sh) ? elf_strptr(elf, shstrndx, sh.sh_name) : NULL;
        if (!name || strcmp(name, ".gopclntab") != 0 || sh.sh_type != SHT_PROGBITS)
            continue;
        Elf_Data *d = elf_getdata(scn, NULL);
        return d && d->d_buf ? cw_gopcln_open(d->d_buf, d->d_size) : NULL;
    }
    return NULL;
}

static void check_debug_info(struct cw_symbolizer *s, struct sym_file *f)
{
    Dwarf_Addr bias;
    if (!dwfl_module_getdwarf(f->mod, &bias) && !(f->gopcln = open_gopcln(f->mod)))
        warn(s,
             "cannot read debug info for %s (install its debug symbols under /usr/lib/debug); "
             "its frames show symbol names without source lines",
             f->path);
}

static struct sym_file *file_open(struct cw_symbolizer *s, const char *path, const uint8_t *id,
                                  uint32_t idlen)
{
    struct sym_file *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    if (!(f->path = intern(s, path))) {
        free(f);
        return NULL;
    }
    if (!is_fileless(path) && attach_elf(s, f) == 0) {
        check_build_id(s, f, id, idlen);
        check_debug_info(s, f);
    }
    return f;
}

static void file_free(struct sym_file *f)
{
    for (size_t i = 0; i < f->cus.cap; i++) {
        if (f->cus.slots[i].used) {
            struct fn_index *ix = (struct fn_index *)(uintptr_t)f->cus.slots[i].val;
            free(ix->r);
            free(ix);
        }
    }
    free(f->cus.slots);
    free(f->syms);
    free(f->curanges);
    cw_gopcln_free(f->gopcln);
    if (f->dwfl)
        dwfl_end(f->dwfl);
    free(f);
}

/* The file of module m, opened on first use; the key is (build-id, path),
 * so processes that mapped the same file share it. */
static struct sym_file *file_for(struct cw_symbolizer *s, const struct cw_module *m, size_t *idx)
{
    char path[CW_PATH_MAX + 1], key[2 * CW_BUILD_ID_MAX + 1 + CW_PATH_MAX + 1];
    size_t plen = strnlen(m->path, CW_PATH_MAX);
    memcpy(path, m->path, plen);
    path[plen] = '\0';
    uint32_t idlen = m->build_id_len < CW_BUILD_ID_MAX ? m->build_id_len : CW_BUILD_ID_MAX;
    for (uint32_t i = 0; i < idlen; i++)
        snprintf(key + 2 * i, 3, "%02x", m->build_id[i]);
    /* Hex digits never contain ':', so the key is unambiguous. */
    snprintf(key + 2 * idlen, sizeof key - 2 * idlen, ":%s", path);

    const char *k = intern(s, key);
    uint64_t v;
    if (!k)
        return NULL;
    if (map_get(&s->files, (uintptr_t)k, 0, &v)) {
        *idx = v;
        return s->file[v];
    }
    if (grow_array((void **)&s->file, &s->capfiles, s->nfiles + 1, sizeof *s->file) < 0)
        return NULL;
    struct sym_file *f = file_open(s, path, m->build_id, idlen);
    if (!f)
        return NULL;
    if (map_put(&s->files, (uintptr_t)k, 0, s->nfiles) < 0) {
        file_free(f);
        return NULL;
    }
    *idx = s->nfiles;
    s->file[s->nfiles++] = f;
    return f;
}

/* ---- symbol table fallback ---- */

/* Aliases at one address: the name a program calls (getpid) before
 * reserved ones (__getpid, __GI_getpid), then global, weak, local, as
 * libdwfl ranks them. C++ names are reserved-looking but public. */
static int symbol_rank(const char *name, int bind)
{
    int reserved = name[0] == '_' && name[1] != 'Z';
    int global = bind == STB_GLOBAL || bind == STB_GNU_UNIQUE;
    if (!reserved && (global || bind == STB_WEAK))
        return 3;
    return global ? 2 : bind == STB_WEAK ? 1 : 0;
}

static int symbol_cmp(const void *a, const void *b)
{
    const struct sym_entry *x = a, *y = b;
    if (x->addr != y->addr)
        return x->addr < y->addr ? -1 : 1;
    if (x->rank != y->rank)
        return y->rank - x->rank;
    return x->sizeless - y->sizeless;
}

/* A sizeless symbol (hand-written assembly) is taken to run to the end of
 * its section, and symbol_at() stops it at the next symbol. */
static GElf_Xword size_to_section_end(Elf *elf, GElf_Word shndx, GElf_Addr addr, Dwarf_Addr bias)
{
    GElf_Shdr mem, *sh = gelf_getshdr(elf_getscn(elf, shndx), &mem);
    if (!sh || addr < sh->sh_addr + bias || addr >= sh->sh_addr + bias + sh->sh_size)
        return 0;
    return sh->sh_addr + bias + sh->sh_size - addr;
}

static void add_symbol(struct sym_file *f, size_t *cap, int ndx)
{
    GElf_Sym sym;
    GElf_Addr addr;
    GElf_Word shndx;
    Elf *elf;
    Dwarf_Addr bias;
    const char *name = dwfl_module_getsym_info(f->mod, ndx, &sym, &addr, &shndx, &elf, &bias);
    if (!name || !name[0] || shndx == SHN_UNDEF || shndx == (GElf_Word)-1)
        return;
    int type = GELF_ST_TYPE(sym.st_info);
    if (type != STT_FUNC && type != STT_GNU_IFUNC)
        return;
    GElf_Xword size = sym.st_size ? sym.st_size : size_to_section_end(elf, shndx, addr, bias);
    if (size == 0 || grow_array((void **)&f->syms, cap, f->nsyms + 1, sizeof *f->syms) < 0)
        return;
    f->syms[f->nsyms++] = (struct sym_entry){
        addr, size, name, symbol_rank(name, GELF_ST_BIND(sym.st_info)), sym.st_size == 0};
}

/*
 * Function symbols sorted by address, one per address (the best-ranked
 * alias). Built once per file: dwfl_module_addrinfo scans the whole symbol
 * table on every call, which for libc costs ~100us an address.
 */
static void build_symbols(struct sym_file *f)
{
    size_t cap = 0, kept = 0;
    f->syms_built = 1;
    int n = dwfl_module_getsymtab(f->mod);
    for (int i = 1; i < n; i++)
        add_symbol(f, &cap, i);
    if (!f->nsyms)
        return;
    qsort(f->syms, f->nsyms, sizeof *f->syms, symbol_cmp);
    for (size_t i = 0; i < f->nsyms; i++)
        if (!kept || f->syms[kept - 1].addr != f->syms[i].addr)
            f->syms[kept++] = f->syms[i];
    f->nsyms = kept;
}

static const struct sym_entry *symbol_at(struct sym_file *f, Dwarf_Addr pc)
{
    if (!f->syms_built)
        build_symbols(f);
    size_t lo = 0, hi = f->nsyms; /* first symbol above pc */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->syms[mid].addr <= pc)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i > 0 && lo - i < FN_NESTING_MAX; i--) {
        const struct sym_entry *e = &f->syms[i - 1];
        if (pc - e->addr < e->size && (!e->sizeless || i == lo))
            return e;
    }
    return NULL;
}

static const char *symtab_name(struct cw_symbolizer *s, struct sym_file *f, Dwarf_Addr pc)
{
    const struct sym_entry *e = symbol_at(f, pc);
    if (!e)
        return NULL;
    const char *pretty = demangled(s, e->name);
    return pretty ? pretty : intern(s, e->name);
}

/* A reserved name (libc's getpid is known to DWARF as __GI_getpid) gives
 * way to the public alias of the function containing pc: the name the
 * program called. */
static const char *public_name(struct cw_symbolizer *s, struct sym_file *f, Dwarf_Addr pc,
                               const char *name)
{
    if (!name || name[0] != '_' || name[1] == 'Z')
        return name;
    const struct sym_entry *e = symbol_at(f, pc);
    return e && e->rank == 3 && e->name[0] != '_' ? intern(s, e->name) : name;
}

/* ---- DWARF: the chain of functions containing a pc ---- */

static int is_function(int tag)
{
    return tag == DW_TAG_subprogram || tag == DW_TAG_inlined_subroutine ||
           tag == DW_TAG_entry_point;
}

/* DIEs that hold code inside a function: the only ones worth descending. */
static int holds_code(int tag)
{
    switch (tag) {
    case DW_TAG_lexical_block:
    case DW_TAG_inlined_subroutine:
    case DW_TAG_try_block:
    case DW_TAG_catch_block:
    case DW_TAG_with_stmt:
    case DW_TAG_subprogram:
    case DW_TAG_entry_point: return 1;
    default: return 0;
    }
}

/* DIEs under which function definitions may sit: C++ methods in classes
 * and namespaces, GNU C nested functions and local classes' methods inside
 * other functions. */
static int holds_functions(int tag)
{
    switch (tag) {
    case DW_TAG_namespace:
    case DW_TAG_class_type:
    case DW_TAG_structure_type:
    case DW_TAG_union_type:
    case DW_TAG_module:
    case DW_TAG_interface_type:
    case DW_TAG_subprogram:
    case DW_TAG_lexical_block: return 1;
    default: return 0;
    }
}

static void index_ranges(struct fn_index *ix, Dwarf_Die *fn)
{
    Dwarf_Addr base, lo, hi;
    ptrdiff_t off = 0;
    while ((off = dwarf_ranges(fn, off, &base, &lo, &hi)) > 0) {
        if (lo >= hi)
            continue;
        if (grow_array((void **)&ix->r, &ix->cap, ix->n + 1, sizeof *ix->r) < 0)
            return;
        ix->r[ix->n++] = (struct fn_range){lo, hi, *fn};
    }
}

static void index_scope(struct fn_index *ix, Dwarf_Die *parent, int depth)
{
    Dwarf_Die child;
    if (depth > SCOPE_DEPTH_MAX || dwarf_child(parent, &child) != 0)
        return;
    do {
        int tag = dwarf_tag(&child);
        if (tag == DW_TAG_subprogram)
            index_ranges(ix, &child);
        if (holds_functions(tag))
            index_scope(ix, &child, depth + 1);
    } while (dwarf_siblingof(&child, &child) == 0);
}

static int range_cmp(const void *a, const void *b)
{
    const struct fn_range *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static struct fn_index *cu_index(struct sym_file *f, Dwarf_Die *cu)
{
    Dwarf_Off off = dwarf_dieoffset(cu);
    uint64_t v;
    if (map_get(&f->cus, off, 0, &v))
        return (struct fn_index *)(uintptr_t)v;
    struct fn_index *ix = calloc(1, sizeof *ix);
    if (!ix)
        return NULL;
    index_scope(ix, cu, 0);
    if (ix->n)
        qsort(ix->r, ix->n, sizeof *ix->r, range_cmp);
    if (map_put(&f->cus, off, 0, (uintptr_t)ix) < 0) {
        free(ix->r);
        free(ix);
        return NULL;
    }
    return ix;
}

/*
 * The innermost function whose ranges hold pc: the last range starting at
 * or below pc, or one shortly before it when functions nest. Returns -1
 * when the CU has no function ranges at all (the index cannot answer).
 */
static int find_subprogram(struct sym_file *f, Dwarf_Die *cu, Dwarf_Addr pc, Dwarf_Die *out)
{
    struct fn_index *ix = cu_index(f, cu);
    if (!ix || !ix->n)
        return -1;
    size_t lo = 0, hi = ix->n; /* first range with lo > pc */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ix->r[mid].lo <= pc)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i > 0 && lo - i < FN_NESTING_MAX; i--) {
        if (pc < ix->r[i - 1].hi) {
            *out = ix->r[i - 1].die;
            return 1;
        }
    }
    return 0;
}

static int child_containing(Dwarf_Die *parent, Dwarf_Addr pc, Dwarf_Die *out)
{
    if (dwarf_child(parent, out) != 0)
        return 0;
    do {
        if (holds_code(dwarf_tag(out)) && dwarf_haspc(out, pc) > 0)
            return 1;
    } while (dwarf_siblingof(out, out) == 0);
    return 0;
}

/* Fills chain with the function-like DIEs from fn inwards; returns how many. */
static int descend(Dwarf_Die *fn, Dwarf_Addr pc, Dwarf_Die *chain, int max)
{
    int n = 0;
    Dwarf_Die cur = *fn, next;
    chain[n++] = cur;
    for (int depth = 0; depth < SCOPE_DEPTH_MAX && n < max && child_containing(&cur, pc, &next);
         depth++) {
        cur = next;
        if (is_function(dwarf_tag(&cur)))
            chain[n++] = cur;
    }
    return n;
}

/* As eu-addr2line -i: dwarf_getscopes continues past an inlined instance
 * into its abstract definition, so the concrete nesting is taken from the
 * innermost scope's own ancestors. Outermost first, like descend(). */
static int chain_via_getscopes(Dwarf_Die *cu, Dwarf_Addr pc, Dwarf_Die *chain, int max)
{
    Dwarf_Die *scopes = NULL;
    int n = dwarf_getscopes(cu, pc, &scopes);
    if (n <= 0) {
        free(scopes);
        return 0;
    }
    Dwarf_Die innermost = scopes[0];
    free(scopes);
    scopes = NULL;
    n = dwarf_getscopes_die(&innermost, &scopes);
    int k = 0;
    for (int i = n - 1; i >= 0 && k < max; i--)
        if (is_function(dwarf_tag(&scopes[i])))
            chain[k++] = scopes[i];
    free(scopes);
    return k;
}

static const char *cu_comp_dir(Dwarf_Die *cu)
{
    Dwarf_Attribute mem;
    return dwarf_formstring(dwarf_attr(cu, DW_AT_comp_dir, &mem));
}

static int small_int(Dwarf_Word v)
{
    return v > INT_MAX ? 0 : (int)v;
}

/* Where the inlined DIE was called from: the location of the frame outside it. */
static void set_call_site(struct cw_symbolizer *s, Dwarf_Die *inlined, struct cw_sym_frame *fr)
{
    Dwarf_Attribute mem;
    Dwarf_Word file, line = 0, col = 0;
    if (dwarf_formudata(dwarf_attr(inlined, DW_AT_call_file, &mem), &file) != 0)
        return;
    dwarf_formudata(dwarf_attr(inlined, DW_AT_call_line, &mem), &line);
    dwarf_formudata(dwarf_attr(inlined, DW_AT_call_column, &mem), &col);
    Dwarf_Die cu;
    Dwarf_Files *files;
    size_t nfiles;
    if (!dwarf_diecu(inlined, &cu, NULL, NULL) || dwarf_getsrcfiles(&cu, &files, &nfiles) != 0 ||
        file >= nfiles)
        return;
    const char *src = dwarf_filesrc(files, file, NULL, NULL);
    if (!src)
        return;
    fr->file = source_path(s, src, cu_comp_dir(&cu));
    fr->line = small_int(line);
    fr->column = small_int(col);
}

/*
 * libdw finds a pc's CU through .debug_aranges, which some linkers never
 * write (Go's); elfutils before 0.189 then finds nothing. Then the CUs' own
 * ranges are read once into a table and searched.
 */
static void build_cu_ranges(struct sym_file *f)
{
    f->curanges_built = 1;
    Dwarf_Addr bias = 0;
    Dwarf *dw = dwfl_module_getdwarf(f->mod, &bias);
    size_t cap = 0, hsize;
    for (Dwarf_Off off = 0, next; dw && dwarf_nextcu(dw, off, &next, &hsize, NULL, NULL, NULL) == 0;
         off = next) {
        Dwarf_Die cu;
        if (!dwarf_offdie(dw, off + hsize, &cu))
            continue;
        Dwarf_Addr base, lo, hi;
        for (ptrdiff_t r = 0; (r = dwarf_ranges(&cu, r, &base, &lo, &hi)) > 0;) {
            if (f->ncuranges == cap &&
                grow_array((void **)&f->curanges, &cap, f->ncuranges + 1, sizeof *f->curanges) < 0)
                return;
            f->curanges[f->ncuranges++] =
                (struct cu_range){lo + bias, hi + bias, dwarf_dieoffset(&cu)};
        }
    }
}

/* pc's CU (dwfl address) with its bias, in *buf; NULL if none covers it. */
static Dwarf_Die *cu_at(struct sym_file *f, Dwarf_Addr pc, Dwarf_Addr *bias, Dwarf_Die *buf)
{
    Dwarf_Die *cu = dwfl_module_addrdie(f->mod, pc, bias);
    if (cu)
        return cu;
    if (!f->curanges_built)
        build_cu_ranges(f);
    Dwarf *dw = dwfl_module_getdwarf(f->mod, bias);
    for (size_t i = 0; dw && i < f->ncuranges; i++)
        if (pc >= f->curanges[i].lo && pc < f->curanges[i].hi)
            return dwarf_offdie(dw, f->curanges[i].die, buf);
    return NULL;
}

static void set_line(struct cw_symbolizer *s, struct sym_file *f, Dwarf_Die *cu, Dwarf_Addr bias,
                     Dwarf_Addr pc, struct cw_sym_frame *fr)
{
    Dwfl_Line *line = dwfl_module_getsrc(f->mod, pc);
    int lineno = 0, col = 0;
    const char *src = line ? dwfl_lineinfo(line, NULL, &lineno, &col, NULL, NULL) : NULL;
    if (src) {
        fr->file = source_path(s, src, dwfl_line_comp_dir(line));
    } else {
        /* The CU found without aranges: its line table directly. */
        Dwarf_Line *l = cu ? dwarf_getsrc_die(cu, pc - bias) : NULL;
        if (!l || !(src = dwarf_linesrc(l, NULL, NULL)) || dwarf_lineno(l, &lineno) != 0)
            return;
        dwarf_linecol(l, &col);
        fr->file = source_path(s, src, cu_comp_dir(cu));
    }
    fr->line = lineno;
    fr->column = col;
}

/* Fills fr[0..] innermost first from the DWARF of the CU; 0 if no function
 * there covers pc. */
static int dwarf_frames(struct cw_symbolizer *s, struct sym_file *f, Dwarf_Die *cu, Dwarf_Addr pc,
                        struct cw_sym_frame *fr)
{
    Dwarf_Die chain[CHAIN_MAX], fn;
    int found = find_subprogram(f, cu, pc, &fn), n = 0;
    if (found > 0)
        n = descend(&fn, pc, chain, CHAIN_MAX);
    else if (found < 0)
        n = chain_via_getscopes(cu, pc, chain, CHAIN_MAX);
    for (int i = 0; i < n; i++) {
        fr[i] = (struct cw_sym_frame){.module = f->path, .inlined = i < n - 1};
        fr[i].function = die_function_name(s, &chain[n - 1 - i]);
        if (i > 0)
            set_call_site(s, &chain[n - i], &fr[i]);
    }
    return n;
}

/* Resolves a dwfl address into fr (CHAIN_MAX entries); returns >= 1. */
static int resolve(struct cw_symbolizer *s, struct sym_file *f, Dwarf_Addr pc,
                   struct cw_sym_frame *fr)
{
    Dwarf_Addr bias = 0;
    Dwarf_Die buf, *cu = cu_at(f, pc, &bias, &buf);
    int n = cu ? dwarf_frames(s, f, cu, pc - bias, fr) : 0;
    if (n == 0)
        fr[n++] = (struct cw_sym_frame){.module = f->path};
    if (n == 1 && !fr[0].function && f->gopcln) {
        const char *fn, *file;
        int line;
        if (cw_gopcln_lookup(f->gopcln, pc, &fn, &file, &line) == 0) {
            fr[0].function = intern(s, fn);
            fr[0].file = file ? intern(s, file) : NULL;
            fr[0].line = line;
            return 1; /* Go's table has no inlined frames to add */
        }
    }
    /* The symbol covering pc is the containing function, never an inlined one. */
    if (!fr[n - 1].function)
        fr[n - 1].function = symtab_name(s, f, pc);
    fr[n - 1].function = public_name(s, f, pc, fr[n - 1].function);
    set_line(s, f, cu, bias, pc, &fr[0]);
    return n;
}

/* The frames of (file, pc), resolved on first use; *frames points into the
 * arena and is valid until the next resolution. */
static int cached_frames(struct cw_symbolizer *s, size_t idx, Dwarf_Addr pc,
                         const struct cw_sym_frame **frames)
{
    uint64_t v;
    if (map_get(&s->addrs, idx, pc, &v)) {
        *frames = s->frames + (v >> 8);
        return (int)(v & 0xff);
    }
    struct cw_sym_frame fr[CHAIN_MAX];
    int n = resolve(s, s->file[idx], pc, fr);
    size_t first = s->nframes;
    if (grow_array((void **)&s->frames, &s->capframes, first + (size_t)n, sizeof *s->frames) < 0 ||
        map_put(&s->addrs, idx, pc, (uint64_t)first << 8 | (uint64_t)n) < 0)
        return 0;
    memcpy(s->frames + first, fr, (size_t)n * sizeof *fr);
    s->nframes += (size_t)n;
    *frames = s->frames + first;
    return n;
}

/* ---- public ---- */

struct cw_symbolizer *cw_symbolizer_new(void)
{
    struct cw_symbolizer *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->callbacks.find_elf = dwfl_build_id_find_elf;
    s->callbacks.find_debuginfo = dwfl_standard_find_debuginfo;
    s->callbacks.section_address = dwfl_offline_section_address;
    s->callbacks.debuginfo_path = &s->debuginfo_path;
    s->demangle = find_demangler();
    return s;
}

void cw_symbolizer_free(struct cw_symbolizer *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nfiles; i++)
        file_free(s->file[i]);
    free(s->file);
    free(s->files.slots);
    free(s->addrs.slots);
    free(s->frames);
    free(s->warnings);
    for (size_t i = 0; i < s->strings.cap; i++)
        free(s->strings.slots[i]);
    free(s->strings.slots);
    free(s);
}

int cw_symbolize(struct cw_symbolizer *s, const struct cw_module *mods, uint32_t nmods,
                 uint64_t address, int is_return_address, struct cw_sym_frame *out, int max)
{
    if (!out || max <= 0)
        return 0;
    out[0] = (struct cw_sym_frame){.address = address};
    uint64_t pc = is_return_address && address ? address - 1 : address;
    const struct cw_module *m = cw_module_at(mods, nmods, pc);
    size_t idx;
    struct sym_file *f = s && m ? file_for(s, m, &idx) : NULL;
    if (!f)
        return 1;
    out[0].module = f->path;
    const struct cw_sym_frame *frames;
    int n = f->mod ? cached_frames(s, idx, pc - m->bias, &frames) : 0;
    if (n > max)
        n = max;
    for (int i = 0; i < n; i++) {
        out[i] = frames[i];
        out[i].address = address;
    }
    return n ? n : 1;
}

int cw_sym_is_own_module(const char *path)
{
    if (!path)
        return 0;
    const char *base = strrchr(path, '/');
    return !strncmp(base ? base + 1 : path, "libclosewatch", 13);
}

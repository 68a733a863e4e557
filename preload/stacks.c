/*
 * stacks.c - backtraces and the map of loaded modules.
 *
 * A backtrace is taken by our own walk (unwind.c: frame rules from .eh_frame,
 * shared by all threads), or by libunwind's unw_backtrace where that walk
 * meets a frame it does not know; our own leading frames are dropped, and the result is
 * interned in the shared stack table: identical stacks get the same id, so
 * an event carries a 4-byte id instead of 24 addresses. The table is
 * lock-free: a slot is claimed by a CAS on its hash and published by a
 * release store of `ready`.
 *
 * The module map (path, address range, build-id) lets the analyzer
 * symbolize after the process is gone. It is append-only, filled at start
 * and after fork, and refreshed when a new stack has a frame outside it,
 * so later dlopens are covered.
 */
#define UNW_LOCAL_ONLY
#include "cw.h"
#include "../common/hash.h"
#include "../common/elf_note.h"

#include <dlfcn.h>
#include <elf.h>
#include <libunwind.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>

#define STACK_PROBES 32

/*
 * libunwind (built with conservative checks, as Debian's is) validates every
 * address it reads by write()-ing it into a pipe it opens for the purpose:
 * two fds taken from the program's lowest free numbers, written to and read
 * from even after the program closed and reused those numbers. We give
 * libunwind's local address space a memory accessor of our own that
 * validates with process_vm_readv on our own pid instead (no fd, EFAULT for
 * unreadable memory), remembering readable pages per thread, and refuse the
 * pipe while libunwind initializes so it never exists.
 */
static __thread int refuse_pipe __attribute__((tls_model("initial-exec")));

CW_EXPORT int pipe2(int fds[2], int flags)
{
    if (refuse_pipe) {
        errno = EMFILE;
        return -1;
    }
    return REAL(pipe2)(fds, flags);
}

/* Two ways per set, sets chosen by a multiplicative hash of the page: a
 * Python walk reads a dozen heap pages besides the stack's, and a direct-
 * mapped table keyed by page % 64 had two of them evict each other on
 * every event (4 process_vm_readv per recorded event, measured). */
#define PAGE_SETS 64
static __thread uintptr_t readable_pages[PAGE_SETS][2] __attribute__((tls_model("initial-exec")));
static int vm_readv_works = 1; /* seccomp may forbid it: then trust the mapping */

static uintptr_t *page_set(uintptr_t page)
{
    return readable_pages[(page * 0x9e3779b97f4a7c15ull) >> 58];
}

/* Remembers a page known readable: the most recent first. */
static void page_known(uintptr_t page)
{
    uintptr_t *set = page_set(page);
    if (set[0] != page + 1) {
        set[1] = set[0];
        set[0] = page + 1;
    }
}

static int page_readable(uintptr_t addr)
{
    uintptr_t page = addr >> 12;
    uintptr_t *set = page_set(page);
    if (set[0] == page + 1 || set[1] == page + 1)
        return 1;
    if (!vm_readv_works)
        return 1;
    uint64_t probe;
    struct iovec local = {&probe, sizeof probe}, remote = {(void *)(page << 12), sizeof probe};
    long r = syscall(SYS_process_vm_readv, cw.pid, &local, 1L, &remote, 1L, 0L);
    if (r < 0 && (errno == EPERM || errno == ENOSYS)) {
        vm_readv_works = 0;
        return 1;
    }
    if (r != (long)sizeof probe)
        return 0;
    page_known(page);
    return 1;
}

/*
 * Walks remembered per thread. A program records its sockets from a few
 * call sites, over and over, with the same frames beneath: its accept loop
 * calls accept() at the same stack address every time. A walk, ours
 * (unwind.c, whose frame rules depend on code addresses only) or libunwind's
 * (on x86-64, its fast path and DWARF rules alike), is a function of where
 * it starts (rip, inside our code; rsp; rbp) and of the stack words it
 * reads, all of which pass through cw_stack_word below. cw_stack keeps a frame
 * pointer, so rbp at the walk's start follows from rsp, and the caller's rbp
 * is one of the words read. So: same start address, same words, same walk;
 * checking a few dozen words replaces a walk of ~1,000 instructions.
 */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define WALK_CACHE 1
#define WALKS      2          /* per thread */
#define WALK_WORDS 48         /* words a walk may read to be remembered */
#define WALK_SPAN  (8u << 20) /* ...all on the stack above where it starts */

struct walk {
    uintptr_t start;   /* cw_stack's frame address */
    const void *ring;  /* the stack table stack_id is in */
    uint32_t nwords;   /* WALK_WORDS + 1: not to be remembered */
    uint32_t stack_id; /* 0: nothing remembered */
    int above;         /* a word at or above start was read */
    uintptr_t addr[WALK_WORDS], word[WALK_WORDS];
};

static __thread struct walk walks[WALKS] __attribute__((tls_model("initial-exec")));
static __thread struct walk *recording __attribute__((tls_model("initial-exec")));
static __thread unsigned walk_next __attribute__((tls_model("initial-exec")));

static void remember_word(uintptr_t addr, uintptr_t word)
{
    struct walk *w = recording;
    /* Below start are first the frames of the walk itself (unw_backtrace's):
     * their words follow from start and our code, and are gone by the time
     * a later walk is recalled. A word below start read after the walk got
     * above it is another stack's: a signal handler on an alternate stack
     * above the thread's. Such a walk is not remembered. */
    if (addr < w->start) {
        if (w->above)
            w->nwords = WALK_WORDS + 1;
        return;
    }
    w->above = 1;
    if (w->nwords < WALK_WORDS) {
        w->addr[w->nwords] = addr;
        w->word[w->nwords] = word;
    }
    if (w->nwords <= WALK_WORDS)
        w->nwords++;
}

/* The id of the stack a walk from start would find, 0 if none is known. */
static uint32_t walk_recall(uintptr_t start)
{
    for (unsigned i = 0; i < WALKS; i++) {
        const struct walk *w = &walks[i];
        if (!w->stack_id || w->start != start || w->ring != cw.hdr)
            continue;
        /* Readable when remembered, on this thread's stack above us; a
         * coroutine library may have put a smaller stack there since. */
        uint32_t k = 0;
        uintptr_t page = 0;
        while (k < w->nwords) {
            if (w->addr[k] >> 12 != page) {
                page = w->addr[k] >> 12;
                if (!page_readable(w->addr[k]))
                    break;
            }
            if (*(const uintptr_t *)w->addr[k] != w->word[k])
                break;
            k++;
        }
        if (k == w->nwords)
            return w->stack_id;
    }
    return 0;
}

/* Forgets what w has read so far: a walk that starts over. */
static void walk_restart(struct walk *w)
{
    w->nwords = 0;
    w->stack_id = 0;
    w->above = 0;
    recording = w;
}

static struct walk *walk_begin(uintptr_t start)
{
    struct walk *w = &walks[walk_next++ % WALKS];
    w->start = start;
    w->ring = cw.hdr;
    walk_restart(w);
    return w;
}

/* Remembers the walk if every word it read above start was on the stack
 * (so readable whenever start is reached again) and it read at least one
 * word per frame found above start (a libunwind that reads without our
 * accessor would leave nothing to check). */
static void walk_end(struct walk *w, int frames_above, uint32_t stack_id)
{
    recording = NULL;
    if (w->nwords > WALK_WORDS || (int)w->nwords < frames_above || !stack_id)
        return;
    for (uint32_t k = 0; k < w->nwords; k++)
        if (w->addr[k] - w->start >= WALK_SPAN)
            return;
    w->stack_id = stack_id;
}
#endif

/* In a fork child: the walks remembered name stacks of the parent's table. */
void cw_stacks_after_fork(void)
{
#ifdef WALK_CACHE
    memset(walks, 0, sizeof walks);
    recording = NULL;
#endif
}

int cw_readable(const void *p, size_t n)
{
    uintptr_t a = (uintptr_t)p;
    return n > 0 && page_readable(a) && page_readable(a + n - 1);
}

int cw_stack_word(uintptr_t addr, uintptr_t *val)
{
    /* An 8-byte read may straddle two pages (never an aligned one). */
    if (!page_readable(addr) ||
        ((addr & 4095) > 4096 - sizeof *val && !page_readable(addr + sizeof *val - 1)))
        return 0;
    *val = *(const uintptr_t *)addr;
#ifdef WALK_CACHE
    if (recording)
        remember_word(addr, *val);
#endif
    return 1;
}

static int access_mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *val, int write, void *arg)
{
    (void)as;
    (void)arg;
    if (write) {
        *(unw_word_t *)addr = *val;
        return 0;
    }
    uintptr_t v;
    if (!cw_stack_word(addr, &v))
        return -UNW_EINVAL;
    *val = v;
    return 0;
}

/*
 * libunwind is loaded when recording starts, not with the library: a process
 * that never opens a socket (most of a traced `make check`) does not pay for
 * mapping and relocating it and liblzma (about half of what the preload
 * cost such a process). Loaded RTLD_LOCAL, so its weak backtrace() no
 * longer stands in for glibc's in the program either. No libunwind: no
 * stacks, everything else recorded.
 */
static struct {
    int (*backtrace)(void **, int);
    int (*getcontext)(unw_context_t *);
    int (*init_local)(unw_cursor_t *, unw_context_t *);
    unw_addr_space_t *local_addr_space;
} unw;

static int load_libunwind(void)
{
    void *h = REAL(dlopen)("libunwind.so.8", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        h = REAL(dlopen)("libunwind.so", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return 0;
    *(void **)&unw.getcontext = dlsym(h, "_Ux86_64_getcontext");
    *(void **)&unw.init_local = dlsym(h, "_ULx86_64_init_local");
    unw.local_addr_space = dlsym(h, "_ULx86_64_local_addr_space");
    void *bt = dlsym(h, "unw_backtrace");
    if (!unw.getcontext || !unw.init_local || !unw.local_addr_space || !bt)
        return 0;
    cw_modules_refresh(); /* it is one of the modules now */
    atomic_store_explicit((_Atomic(void *) *)(void *)&unw.backtrace, bt, memory_order_release);
    return 1;
}

static int backtrace_pcs(void **pcs, int max)
{
    int (*bt)(void **, int) =
        atomic_load_explicit((_Atomic(void *) *)(void *)&unw.backtrace, memory_order_acquire);
    if (!bt)
        return 0;
    int saved = errno;
    int n = bt(pcs, max);
    errno = saved;
    return n;
}

/* The first unw_backtrace initializes libunwind: do it at start, not inside
 * the program's first accept(). */
void cw_stacks_warm_up(void)
{
    /* Initialize libunwind without unw_backtrace, whose per-thread cache
     * would remember the failed validations of this first walk. */
    static _Atomic int once;
    if (atomic_exchange(&once, 1))
        return;
    unw_context_t uc;
    unw_cursor_t cursor;
    refuse_pipe = 1; /* its constructors and its init alike */
    int ok = load_libunwind();
    if (ok) {
        unw.getcontext(&uc);
        unw.init_local(&cursor, &uc);
    }
    refuse_pipe = 0;
    if (!ok)
        return;
    /* The local address space begins with its accessors (libunwind_i.h). */
    unw_accessors_t *acc = (unw_accessors_t *)*unw.local_addr_space;
    if (acc && acc->access_mem)
        acc->access_mem = access_mem;
    void *pcs[4];
    backtrace_pcs(pcs, 4); /* validated by our accessor: caches start clean */
}

static uint64_t hash_pcs(void *const *pcs, int n)
{
    uint64_t h = CW_HASH_SEED;
    for (int i = 0; i < n; i++)
        h = cw_hash_step(h, (uint64_t)(uintptr_t)pcs[i]);
    return h | 1; /* 0 marks a free slot */
}

static struct cw_stack_slot *slot_at(uint32_t i)
{
    return (struct cw_stack_slot *)(cw.stacks + (size_t)i * cw.hdr->stack_slot_size);
}

/*
 * Libraries dlopen()ed since the last refresh (Python's extension modules,
 * the JVM's libnio) must be in the module map before a stack through them
 * is stored, or no report can name those frames. A stack seen before was
 * covered then; a new one is checked frame by frame, and the map refreshed
 * when a frame lies outside every module we know.
 */
static int modules_cover(void *const *pcs, int n)
{
    uint32_t count =
        atomic_load_explicit((_Atomic uint32_t *)&cw.hdr->module_count, memory_order_acquire);
    if (count > cw.hdr->module_cap)
        count = cw.hdr->module_cap;
    for (int i = 0; i < n; i++) {
        uintptr_t pc = (uintptr_t)pcs[i];
        uint32_t m = 0;
        while (m < count &&
               !(cw.modules[m].ready && cw.modules[m].start <= pc && pc < cw.modules[m].end))
            m++;
        if (m == count)
            return 0;
    }
    return 1;
}

/* glibc counts loads and unloads in every dl_phdr_info. Frames outside
 * every module are normal too (JIT code, the vdso): refresh only when the
 * counts moved. */
static _Atomic unsigned long long modules_seen_adds, modules_seen_subs;

static int read_load_counts(struct dl_phdr_info *info, size_t size, void *out)
{
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
        ((unsigned long long *)out)[0] = info->dlpi_adds;
        ((unsigned long long *)out)[1] = info->dlpi_subs;
    }
    return 1; /* the first object is enough: the counts are global */
}

static void modules_cover_or_refresh(void *const *pcs, int n)
{
    if (modules_cover(pcs, n))
        return;
    unsigned long long c[2] = {0, 0};
    dl_iterate_phdr(read_load_counts, c);
    if (c[0] != atomic_load_explicit(&modules_seen_adds, memory_order_relaxed) ||
        c[1] != atomic_load_explicit(&modules_seen_subs, memory_order_relaxed))
        cw_modules_refresh();
}

int cw_stack_pcs(uint32_t id, const uint64_t **pcs)
{
    if (!id || id > cw.hdr->stack_cap)
        return 0;
    const struct cw_stack_slot *s = slot_at(id - 1);
    if (!atomic_load_explicit((_Atomic uint32_t *)&s->ready, memory_order_acquire))
        return 0;
    *pcs = s->pcs;
    return (int)s->depth;
}

/* Interns the n frames in pcs (our own leading ones included, skipped)
 * with the language stack run beneath them (0: none). */
static uint32_t intern(void **pcs, int n, uint32_t lang)
{
    int skip = 0;
    while (skip < n && (uintptr_t)pcs[skip] >= cw.self_lo && (uintptr_t)pcs[skip] < cw.self_hi)
        skip++;
    n -= skip;
    if (n > (int)cw.depth)
        n = (int)cw.depth;
    if (n <= 0 && !lang)
        return 0;
    if (n < 0)
        n = 0;
    void **frames = pcs + skip;

    struct cw_header *h = cw.hdr;
    uint64_t hash = hash_pcs(frames, n) ^ (uint64_t)lang << 33;
    uint32_t mask = h->stack_cap - 1;
    for (uint32_t probe = 0; probe < STACK_PROBES; probe++) {
        uint32_t i = (uint32_t)(hash + probe) & mask;
        struct cw_stack_slot *s = slot_at(i);
        _Atomic uint64_t *sh = (_Atomic uint64_t *)&s->hash;
        uint64_t cur = atomic_load_explicit(sh, memory_order_acquire);
        if (cur == 0) {
            if (atomic_compare_exchange_strong(sh, &cur, hash)) {
                modules_cover_or_refresh(frames, n);
                s->depth = (uint32_t)n;
                s->lang_stack = lang;
                memcpy(s->pcs, frames, (size_t)n * sizeof *frames);
                atomic_store_explicit((_Atomic uint32_t *)&s->ready, 1, memory_order_release);
                return i + 1;
            }
        }
        if (cur != hash)
            continue;
        /* Same hash: a slot still being filled is taken to be ours (64-bit
         * hashes of return addresses do not collide in practice). */
        if (!atomic_load_explicit((_Atomic uint32_t *)&s->ready, memory_order_acquire) ||
            (s->depth == (uint32_t)n && s->lang_stack == lang &&
             !memcmp(s->pcs, frames, (size_t)n * sizeof *frames)))
            return i + 1;
    }
    atomic_fetch_add((_Atomic uint64_t *)&h->stacks_dropped, 1);
    return 0;
}

uint32_t cw_stack_copy(const struct cw_header *from, uint32_t id)
{
    if (!id || id > from->stack_cap || from->stack_slot_size != cw.hdr->stack_slot_size)
        return 0;
    const struct cw_stack_slot *s = (const void *)((const uint8_t *)from + from->stack_off +
                                                   (size_t)(id - 1) * from->stack_slot_size);
    if (!atomic_load_explicit((_Atomic uint32_t *)&s->ready, memory_order_acquire) ||
        s->depth > from->stack_depth)
        return 0;
    void *pcs[CW_MAX_DEPTH];
    int n = (int)s->depth < CW_MAX_DEPTH ? (int)s->depth : CW_MAX_DEPTH;
    memcpy(pcs, s->pcs, (size_t)n * sizeof *pcs);
    uint32_t lang = s->lang_stack ? cw_lang_stack_copy(from, s->lang_stack) : 0;
    return intern(pcs, n, lang);
}

#ifdef WALK_CACHE
#define WITH_FRAME_POINTER __attribute__((noinline, optimize("no-omit-frame-pointer")))
#else
#define WITH_FRAME_POINTER
#endif

/* The native stack: remembered walks (above) key on native words only. */
static WITH_FRAME_POINTER uint32_t native_stack(void)
{
    void *pcs[CW_MAX_DEPTH + 8];
    int max = (int)cw.depth + 8;
#ifdef WALK_CACHE
    uintptr_t start = (uintptr_t)__builtin_frame_address(0);
    uint32_t id = walk_recall(start);
    if (id)
        return id;
    /* We are running on start's page: no need to ask the kernel about it
     * (a new thread's first walk otherwise costs a process_vm_readv). */
    page_known(start >> 12);
    struct walk *w = walk_begin(start);
    /* Our own walk finds only frames above start; libunwind's starts with
     * one in cw_stack itself. */
    int n = cw_unwind(start, pcs, max), above = n;
    if (n < 0) {
        walk_restart(w);
        n = backtrace_pcs(pcs, max);
        above = n - 1;
    }
    id = intern(pcs, n, 0);
    walk_end(w, above, id);
    return id;
#else
    return intern(pcs, backtrace_pcs(pcs, max), 0);
#endif
}

/* The native stack with the language frames beneath it (pyframes.c,
 * jframes.c): the same native stack over other Python or Java code is
 * another stack. */
uint32_t cw_stack(void)
{
    uint32_t id = native_stack(), lang = cw_lang_stack();
    if (!lang)
        lang = cw_java_stack();
    return lang ? cw_stack_with_lang(id, lang) : id;
}

uint32_t cw_stack_with_lang(uint32_t id, uint32_t lang)
{
    const uint64_t *pcs = NULL;
    void *frames[CW_MAX_DEPTH];
    int n = id ? cw_stack_pcs(id, &pcs) : 0;
    if (n)
        memcpy(frames, pcs, (size_t)n * sizeof *frames);
    return intern(frames, n, lang);
}

static void read_build_id(struct cw_module *m, const struct dl_phdr_info *info)
{
    uint32_t len;
    const uint8_t *id = cw_elf_note(info, "GNU", NT_GNU_BUILD_ID, &len);
    if (!id)
        return;
    m->build_id_len = len < CW_BUILD_ID_MAX ? len : CW_BUILD_ID_MAX;
    memcpy(m->build_id, id, m->build_id_len);
}

static int module_known(uintptr_t start, uintptr_t bias, const char *path)
{
    uint32_t n = cw.hdr->module_count;
    if (n > cw.hdr->module_cap)
        n = cw.hdr->module_cap;
    for (uint32_t i = 0; i < n; i++) {
        const struct cw_module *m = &cw.modules[i];
        if (m->ready && m->start == start && m->bias == bias && !strcmp(m->path, path))
            return 1;
    }
    return 0;
}

static int add_module(struct dl_phdr_info *info, size_t size, void *self_base)
{
    (void)size;
    uintptr_t lo = UINTPTR_MAX, hi = 0, xlo = UINTPTR_MAX, xhi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uintptr_t s = info->dlpi_addr + ph->p_vaddr, e = s + ph->p_memsz;
        lo = s < lo ? s : lo;
        hi = e > hi ? e : hi;
        if (ph->p_flags & PF_X) {
            xlo = s < xlo ? s : xlo;
            xhi = e > xhi ? e : xhi;
        }
    }
    if (hi == 0)
        return 0;
    if ((void *)info->dlpi_addr == self_base) {
        cw.self_lo = xlo;
        cw.self_hi = xhi;
    }
    const char *path = info->dlpi_name && *info->dlpi_name ? info->dlpi_name : cw.hdr->exe;
    if (module_known(lo, info->dlpi_addr, path))
        return 0;
    uint32_t idx = atomic_fetch_add((_Atomic uint32_t *)&cw.hdr->module_count, 1);
    if (idx >= cw.hdr->module_cap) {
        atomic_fetch_add((_Atomic uint64_t *)&cw.hdr->modules_dropped, 1);
        return 0;
    }
    struct cw_module *m = &cw.modules[idx];
    m->bias = info->dlpi_addr;
    m->start = lo;
    m->end = hi;
    m->loaded_ns = cw_now();
    snprintf(m->path, sizeof m->path, "%s", path);
    read_build_id(m, info);
    atomic_store_explicit((_Atomic uint32_t *)&m->ready, 1, memory_order_release);
    cw_jframes_module(path, info);
    return 0;
}

void cw_modules_refresh(void)
{
    static _Atomic int busy;
    if (!cw.hdr || atomic_exchange(&busy, 1))
        return;
    Dl_info self;
    void *self_base = dladdr((void *)cw_modules_refresh, &self) ? self.dli_fbase : NULL;
    /* Counts first: a load racing with the walk below shows as a change at
     * the next check instead of being missed. */
    unsigned long long c[2] = {0, 0};
    dl_iterate_phdr(read_load_counts, c);
    atomic_store_explicit(&modules_seen_adds, c[0], memory_order_relaxed);
    atomic_store_explicit(&modules_seen_subs, c[1], memory_order_relaxed);
    dl_iterate_phdr(add_module, self_base);
    atomic_store(&busy, 0);
}

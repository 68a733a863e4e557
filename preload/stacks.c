/*
 * stacks.c - backtraces and the map of loaded modules.
 *
 * A backtrace is taken with libunwind's unw_backtrace (the fast path that
 * caches frame info), our own leading frames are dropped, and the result is
 * interned in the shared stack table: identical stacks get the same id, so
 * an event carries a 4-byte id instead of 24 addresses. The table is
 * lock-free: a slot is claimed by a CAS on its hash and published by a
 * release store of `ready`.
 *
 * The module map (path, address range, build-id) lets the analyzer
 * symbolize after the process is gone. It is append-only and refreshed at
 * start, after fork, by the sampler and at exit, so libraries loaded later
 * are covered too.
 */
#define UNW_LOCAL_ONLY
#include "cw.h"

#include <dlfcn.h>
#include <elf.h>
#include <libunwind.h>
#include <link.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <fcntl.h>

#define STACK_PROBES 32

/*
 * libunwind validates stack addresses by writing them to a pipe it opens on
 * first need (and again after a program's closefrom() closed it). Taken
 * from the program's lowest free numbers, those two fds would shift every
 * fd number the program gets afterwards. While we unwind, pipe2 therefore
 * parks the pipe's ends out of the way: just above the soft RLIMIT_NOFILE
 * when the hard limit allows it (outside the numbers the program can get,
 * and not counted against its limit), else near the top of a bounded range.
 */
static __thread int unwinding __attribute__((tls_model("initial-exec")));

#define PARK_CEILING 65536 /* a higher fd would grow the kernel's fd table */

static int park_fd(int fd)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return fd;
    rlim_t soft = rl.rlim_cur, target;
    if (rl.rlim_max > soft + 2 && soft + 2 <= PARK_CEILING)
        target = soft;
    else
        target = (soft < PARK_CEILING ? soft : PARK_CEILING) - 2;
    int parked = -1;
    if (target >= soft) {
        /* F_DUPFD refuses numbers at or above the soft limit: lift it for
         * the duration of the dup. */
        struct rlimit lifted = {target + 2, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &lifted) == 0) {
            parked = (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, (long)target);
            setrlimit(RLIMIT_NOFILE, &rl);
        }
    } else if (target > (rlim_t)fd) {
        parked = (int)syscall(SYS_fcntl, fd, F_DUPFD_CLOEXEC, (long)target);
    }
    if (parked < 0)
        return fd;
    syscall(SYS_close, fd);
    return parked;
}

CW_EXPORT int pipe2(int fds[2], int flags)
{
    static int (*real_pipe2)(int[2], int);
    if (!real_pipe2)
        *(void **)&real_pipe2 = dlsym(RTLD_NEXT, "pipe2");
    int r = real_pipe2(fds, flags);
    if (r == 0 && unwinding) {
        int saved = errno;
        fds[0] = park_fd(fds[0]);
        fds[1] = park_fd(fds[1]);
        errno = saved;
    }
    return r;
}

static int backtrace_pcs(void **pcs, int max)
{
    unwinding = 1;
    int n = unw_backtrace(pcs, max);
    unwinding = 0;
    return n;
}

/* The first unw_backtrace initializes libunwind: do it at start, not inside
 * the program's first accept(). */
void cw_stacks_warm_up(void)
{
    void *pcs[4];
    backtrace_pcs(pcs, 4);
}

static uint64_t hash_pcs(void *const *pcs, int n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < n; i++) {
        h ^= (uint64_t)(uintptr_t)pcs[i];
        h *= 0x100000001b3ull;
        h ^= h >> 29;
    }
    return h | 1; /* 0 marks a free slot */
}

static struct cw_stack_slot *slot_at(uint32_t i)
{
    return (struct cw_stack_slot *)(cw.stacks + (size_t)i * cw.hdr->stack_slot_size);
}

/*
 * Libraries dlopen()ed since the last refresh (Python's extension modules,
 * the JVM's libnio) must be in the module map before a stack through them
 * is recorded, or a live report cannot name those frames until the
 * sampler's next refresh, and one unloaded before it never. glibc counts
 * loads and unloads in every dl_phdr_info: reading them costs one step of
 * dl_iterate_phdr, so each recorded stack can afford the check.
 */
static _Atomic unsigned long long modules_seen_adds, modules_seen_subs;

static int read_load_counts(struct dl_phdr_info *info, size_t size, void *out)
{
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
        ((unsigned long long *)out)[0] = info->dlpi_adds;
        ((unsigned long long *)out)[1] = info->dlpi_subs;
    }
    return 1; /* the first object is enough: the counts are global */
}

static void modules_check(void)
{
    unsigned long long c[2] = {0, 0};
    dl_iterate_phdr(read_load_counts, c);
    if (c[0] != atomic_load_explicit(&modules_seen_adds, memory_order_relaxed) ||
        c[1] != atomic_load_explicit(&modules_seen_subs, memory_order_relaxed))
        cw_modules_refresh();
}

uint32_t cw_stack(void)
{
    modules_check();
    void *pcs[CW_MAX_DEPTH + 8];
    int n = backtrace_pcs(pcs, (int)cw.depth + 8);
    int skip = 0;
    while (skip < n && (uintptr_t)pcs[skip] >= cw.self_lo && (uintptr_t)pcs[skip] < cw.self_hi)
        skip++;
    n -= skip;
    if (n > (int)cw.depth)
        n = (int)cw.depth;
    if (n <= 0)
        return 0;
    void **frames = pcs + skip;

    struct cw_header *h = cw.hdr;
    uint64_t hash = hash_pcs(frames, n);
    uint32_t mask = h->stack_cap - 1;
    for (uint32_t probe = 0; probe < STACK_PROBES; probe++) {
        uint32_t i = (uint32_t)(hash + probe) & mask;
        struct cw_stack_slot *s = slot_at(i);
        _Atomic uint64_t *sh = (_Atomic uint64_t *)&s->hash;
        uint64_t cur = atomic_load_explicit(sh, memory_order_acquire);
        if (cur == 0) {
            if (atomic_compare_exchange_strong(sh, &cur, hash)) {
                s->depth = (uint32_t)n;
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
            (s->depth == (uint32_t)n && !memcmp(s->pcs, frames, (size_t)n * sizeof *frames)))
            return i + 1;
    }
    atomic_fetch_add((_Atomic uint64_t *)&h->stacks_dropped, 1);
    return 0;
}

static void read_build_id(struct cw_module *m, const struct dl_phdr_info *info)
{
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
        const uint8_t *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const void *)p;
            const uint8_t *name = p + sizeof *nh;
            const uint8_t *desc = name + ((nh->n_namesz + 3) & ~3u);
            if (desc + nh->n_descsz > end)
                break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && !memcmp(name, "GNU", 4)) {
                uint32_t len = nh->n_descsz < CW_BUILD_ID_MAX ? nh->n_descsz : CW_BUILD_ID_MAX;
                memcpy(m->build_id, desc, len);
                m->build_id_len = len;
                return;
            }
            p = desc + ((nh->n_descsz + 3) & ~3u);
        }
    }
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
    return 0;
}

static int add_module_cb(struct dl_phdr_info *info, size_t size, void *self_base)
{
    return add_module(info, size, self_base);
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
    dl_iterate_phdr(add_module_cb, self_base);
    atomic_store(&busy, 0);
}

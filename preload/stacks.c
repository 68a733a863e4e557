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

#define STACK_PROBES 32

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

uint32_t cw_stack(void)
{
    void *pcs[CW_MAX_DEPTH + 8];
    int n = unw_backtrace(pcs, (int)cw.depth + 8);
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
    dl_iterate_phdr(add_module_cb, self_base);
    atomic_store(&busy, 0);
}

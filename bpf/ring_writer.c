/*
 * ring_writer.c - the ring file of a process watched by the bpf recorder,
 * written from outside it (see ring_writer.h).
 *
 * The layout is common/ring_layout.h's; the rules for writing it are the
 * preload's: the file is complete before it is named (O_TMPFILE, linked
 * last), an event slot's seq is stored last, an fd entry's sid carries
 * CW_SID_OPEN while open and changes by compare-exchange (the sampler
 * retires sockets it finds gone), counters move with atomics (the sampler
 * adds events and sockets it adopts). The module map is read from
 * /proc/PID/maps, the build-ids from the files themselves.
 */
#include "ring_writer.h"
#include "../common/hash.h"
#include "../common/proc_stat.h"
#include "../common/ring_layout.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STACK_PROBES 64

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static ssize_t slurp(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t n = 0;
    ssize_t r;
    while (n < cap && (r = read(fd, buf + n, cap - n)) > 0)
        n += (size_t)r;
    close(fd);
    return (ssize_t)n;
}

int cwb_proc_stat(pid_t pid, struct cw_pstat *st)
{
    char p[64], buf[1024];
    snprintf(p, sizeof p, "/proc/%d/stat", (int)pid);
    ssize_t n = slurp(p, buf, sizeof buf);
    return n > 0 ? cw_pstat_parse(buf, (size_t)n, st) : -1;
}

/* The header's facts about pid, asked of /proc. */
static void fill_identity(struct cw_header *h, pid_t pid, uid_t uid)
{
    char p[64];
    ssize_t n;
    h->pid = pid;
    h->uid = uid;
    struct cw_pstat st;
    if (cwb_proc_stat(pid, &st) == 0) {
        h->ppid = st.ppid;
        h->proc_starttime = st.starttime;
    }
    h->start_realtime_ns = clock_ns(CLOCK_REALTIME);
    h->start_mono_ns = h->heartbeat_mono_ns = clock_ns(CLOCK_MONOTONIC);
    snprintf(p, sizeof p, "/proc/%d/exe", (int)pid);
    n = readlink(p, h->exe, sizeof h->exe - 1);
    h->exe[n > 0 ? n : 0] = 0;
    snprintf(p, sizeof p, "/proc/%d/cmdline", (int)pid);
    n = slurp(p, h->argv, sizeof h->argv);
    h->argv_len = n > 0 ? (uint32_t)n : 0;
    if (h->argv_len == sizeof h->argv)
        h->argv[sizeof h->argv - 1] = 0;
}

static int ring_name(struct cwb_ring *r, const char *dir, int seq)
{
    int n = snprintf(r->path, sizeof r->path, "%s/" CW_FILE_PREFIX "%d.%d" CW_FILE_SUFFIX, dir,
                     (int)r->pid, seq);
    return n > 0 && (size_t)n < sizeof r->path;
}

int cwb_ring_create(struct cwb_ring *r, const char *dir, pid_t pid, uid_t uid, gid_t gid,
                    uint32_t depth, uint32_t sample_ms)
{
    struct cw_header proto;
    cw_ring_layout(&proto, depth, CW_DEFAULT_FD_CAP, CW_DEFAULT_RING_MB, sample_ms);
    memset(r, 0, sizeof *r);
    r->pid = pid;
    int fd = open(dir, O_RDWR | O_TMPFILE | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    void *map = MAP_FAILED;
    if (fchown(fd, uid, gid) == 0 && ftruncate(fd, (off_t)proto.file_size) == 0)
        map = mmap(NULL, proto.file_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        close(fd);
        return -1;
    }
    struct cw_header *h = map;
    *h = proto;
    fill_identity(h, pid, uid);
    h->recorder = CW_REC_BPF;
    r->h = h;
    r->size = proto.file_size;
    cwb_ring_modules(r);
    char fd_path[32];
    snprintf(fd_path, sizeof fd_path, "/proc/self/fd/%d", fd);
    int ok = 0;
    for (int seq = 0; !ok && seq < 1000 && ring_name(r, dir, seq); seq++) {
        h->image_seq = (uint32_t)seq;
        atomic_store_explicit((_Atomic uint64_t *)&h->magic, CW_MAGIC, memory_order_release);
        if (linkat(AT_FDCWD, fd_path, AT_FDCWD, r->path, AT_SYMLINK_FOLLOW) == 0)
            ok = 1;
        else if (errno != EEXIST)
            break;
    }
    close(fd);
    if (!ok) {
        munmap(map, proto.file_size);
        r->h = NULL;
        return -1;
    }
    return 0;
}

void cwb_ring_release(struct cwb_ring *r)
{
    if (r->h)
        munmap(r->h, r->size);
    r->h = NULL;
}

static void mark_end(struct cwb_ring *r, uint64_t ts, uint32_t state)
{
    r->h->exit_mono_ns = ts;
    atomic_store_explicit((_Atomic uint32_t *)&r->h->exit_state, state, memory_order_release);
}

void cwb_ring_mark_execed(struct cwb_ring *r, uint64_t ts)
{
    mark_end(r, ts, CW_EXECED);
}

void cwb_ring_mark_exited(struct cwb_ring *r, uint64_t ts)
{
    mark_end(r, ts, CW_EXITED);
}

void cwb_ring_mark_attached(struct cwb_ring *r)
{
    struct cw_header *h = r->h;
    uint64_t mono = clock_ns(CLOCK_MONOTONIC), boot = clock_ns(CLOCK_BOOTTIME);
    long tick = sysconf(_SC_CLK_TCK);
    uint64_t started = tick > 0 ? h->proc_starttime * (1000000000ull / (uint64_t)tick) : boot;
    /* The process's life began before the ring: date its start from the
     * kernel's start time (boot-relative), so ages and durations are its own. */
    uint64_t age = boot > started ? boot - started : 0;
    h->attach_mono_ns = mono;
    if (age && age < mono) {
        h->start_mono_ns = mono - age;
        h->start_realtime_ns -= age;
    }
}

void cwb_ring_mark_detached(struct cwb_ring *r, uint64_t ts)
{
    r->h->detach_mono_ns = ts;
}

/* ---- module map ------------------------------------------------------------ */

/* From the ELF file at path: its type, the range of its PT_LOAD segments
 * (link addresses) and its GNU build-id. 0, or -1 if it is not one. */
static int elf_facts(const char *path, int *type, uint64_t *lo, uint64_t *hi, struct cw_module *m)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    Elf64_Ehdr eh;
    int ok = fread(&eh, sizeof eh, 1, f) == 1 && !memcmp(eh.e_ident, ELFMAG, SELFMAG) &&
             eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_phentsize == sizeof(Elf64_Phdr);
    *lo = UINT64_MAX;
    *hi = 0;
    for (int i = 0; ok && i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        if (fseek(f, (long)(eh.e_phoff + (uint64_t)i * sizeof ph), SEEK_SET) ||
            fread(&ph, sizeof ph, 1, f) != 1)
            break;
        if (ph.p_type == PT_LOAD) {
            *lo = ph.p_vaddr < *lo ? ph.p_vaddr : *lo;
            *hi = ph.p_vaddr + ph.p_memsz > *hi ? ph.p_vaddr + ph.p_memsz : *hi;
        } else if (ph.p_type == PT_NOTE && ph.p_filesz <= 4096 && !m->build_id_len) {
            uint8_t notes[4096];
            long back = ftell(f);
            if (fseek(f, (long)ph.p_offset, SEEK_SET) == 0 &&
                fread(notes, 1, ph.p_filesz, f) == ph.p_filesz) {
                for (size_t o = 0; o + sizeof(Elf64_Nhdr) <= ph.p_filesz;) {
                    const Elf64_Nhdr *nh = (const void *)(notes + o);
                    size_t desc = o + sizeof *nh + ((nh->n_namesz + 3) & ~3u);
                    if (desc + nh->n_descsz > ph.p_filesz)
                        break;
                    if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 &&
                        !memcmp(notes + o + sizeof *nh, "GNU", 4) &&
                        nh->n_descsz <= CW_BUILD_ID_MAX) {
                        memcpy(m->build_id, notes + desc, nh->n_descsz);
                        m->build_id_len = nh->n_descsz;
                    }
                    o = desc + ((nh->n_descsz + 3) & ~3u);
                }
            }
            fseek(f, back, SEEK_SET);
        }
    }
    fclose(f);
    *type = eh.e_type;
    return ok && *hi > *lo ? 0 : -1;
}

/* Whether path's mapping at map_start is in the table: its module starts in
 * that page (start = bias + first PT_LOAD address, whose page is mapped at
 * map_start). Checked before the file is opened: a re-read after a new
 * stack opens only the files mapped since. */
static int module_known(const struct cw_header *h, const struct cw_module *mods, uint64_t map_start,
                        const char *path)
{
    for (uint32_t i = 0; i < h->module_count && i < h->module_cap; i++)
        if (mods[i].start - map_start < 4096 && !strcmp(mods[i].path, path))
            return 1;
    return 0;
}

void cwb_ring_modules(struct cwb_ring *r)
{
    struct cw_header *h = r->h;
    struct cw_module *mods = (void *)((uint8_t *)h + h->module_off);
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/maps", (int)r->pid);
    FILE *f = fopen(p, "r");
    if (!f)
        return;
    char line[CW_PATH_MAX + 128];
    while (fgets(line, sizeof line, f)) {
        unsigned long long start, end, off;
        int path_at = 0;
        if (sscanf(line, "%llx-%llx %*s %llx %*s %*s %n", &start, &end, &off, &path_at) != 3 ||
            !path_at || line[path_at] != '/' || off != 0)
            continue; /* one module per file, at its mapping of offset 0 */
        char *path = line + path_at;
        path[strcspn(path, "\n")] = 0;
        if (strlen(path) >= CW_PATH_MAX || module_known(h, mods, start, path))
            continue;
        struct cw_module m = {0};
        int type;
        uint64_t lo, hi;
        if (elf_facts(path, &type, &lo, &hi, &m) != 0)
            continue;
        m.bias = type == ET_DYN ? start - (lo & ~4095ull) : 0;
        m.start = m.bias + lo;
        m.end = m.bias + hi;
        m.loaded_ns = clock_ns(CLOCK_MONOTONIC);
        snprintf(m.path, sizeof m.path, "%s", path);
        if (module_known(h, mods, m.start, m.path))
            continue; /* an unusual first segment: known after all */
        uint32_t idx = h->module_count;
        if (idx >= h->module_cap) {
            h->modules_dropped++;
            continue;
        }
        m.ready = 0;
        mods[idx] = m;
        atomic_store_explicit((_Atomic uint32_t *)&mods[idx].ready, 1, memory_order_release);
        atomic_store_explicit((_Atomic uint32_t *)&h->module_count, idx + 1, memory_order_release);
    }
    fclose(f);
}

static int covered(const struct cwb_ring *r, uint64_t pc)
{
    const struct cw_header *h = r->h;
    uint32_t n = h->module_count < h->module_cap ? h->module_count : h->module_cap;
    return cw_module_at((const void *)((const uint8_t *)h + h->module_off), n, pc) != NULL;
}

/* ---- stacks ---------------------------------------------------------------- */

uint32_t cwb_ring_stack(struct cwb_ring *r, const uint64_t *pcs, int n)
{
    struct cw_header *h = r->h;
    if (n > (int)h->stack_depth)
        n = (int)h->stack_depth;
    if (n <= 0)
        return 0;
    uint64_t hash = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < n; i++)
        hash = cw_hash64(hash ^ pcs[i]);
    hash |= 1; /* 0 marks a free slot */
    uint8_t *table = (uint8_t *)h + h->stack_off;
    for (uint32_t probe = 0; probe < STACK_PROBES; probe++) {
        uint32_t i = (uint32_t)(hash + probe) & (h->stack_cap - 1);
        struct cw_stack_slot *s = (void *)(table + (size_t)i * h->stack_slot_size);
        if (s->hash == hash && s->depth == (uint32_t)n && !memcmp(s->pcs, pcs, 8u * (size_t)n))
            return i + 1;
        if (s->hash)
            continue;
        /* A new stack: frames in a library loaded since the map was read
         * must be in the map before any report looks for them. */
        for (int k = 0; k < n; k++)
            if (!covered(r, pcs[k])) {
                cwb_ring_modules(r);
                break;
            }
        s->hash = hash;
        s->depth = (uint32_t)n;
        s->lang_stack = 0;
        memcpy(s->pcs, pcs, 8u * (size_t)n);
        atomic_store_explicit((_Atomic uint32_t *)&s->ready, 1, memory_order_release);
        return i + 1;
    }
    atomic_fetch_add((_Atomic uint64_t *)&h->stacks_dropped, 1);
    return 0;
}

/* ---- events and the fd table ------------------------------------------------ */

void cwb_ring_event(struct cwb_ring *r, uint64_t ts, uint32_t tid, uint16_t type, int fd,
                    uint64_t sid, uint32_t stack, int64_t a0, int64_t a1, int64_t a2)
{
    struct cw_header *h = r->h;
    uint64_t idx = atomic_fetch_add((_Atomic uint64_t *)&h->write_idx, 1);
    struct cw_event *ev =
        (void *)((uint8_t *)h + h->ring_off + (idx & (h->ring_cap - 1)) * sizeof *ev);
    atomic_store_explicit((_Atomic uint64_t *)&ev->seq, 0, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    *ev = (struct cw_event){.time_ns = ts,
                            .sid = sid,
                            .fd = fd,
                            .type = type,
                            .tid = tid,
                            .stack = stack,
                            .arg0 = a0,
                            .arg1 = a1,
                            .arg2 = a2};
    atomic_store_explicit((_Atomic uint64_t *)&ev->seq, idx + 1, memory_order_release);
}

struct cw_fd_entry *cwb_ring_fd(struct cwb_ring *r, int fd)
{
    if (fd < 0 || (uint32_t)fd >= r->h->fd_cap)
        return NULL;
    return (struct cw_fd_entry *)((uint8_t *)r->h + r->h->fd_off) + fd;
}

/* Clears CW_SID_OPEN if the entry still holds open_sid (the sampler may
 * have retired it first). */
static int retire(struct cwb_ring *r, struct cw_fd_entry *e, uint64_t open_sid)
{
    uint64_t expect = open_sid;
    if (!atomic_compare_exchange_strong((_Atomic uint64_t *)&e->sid, &expect,
                                        open_sid & ~CW_SID_OPEN))
        return 0;
    atomic_fetch_sub((_Atomic uint32_t *)&r->h->sockets_open, 1);
    return 1;
}

struct cw_fd_entry *cwb_ring_open(struct cwb_ring *r, const struct cwb_open *o)
{
    struct cw_header *h = r->h;
    struct cw_fd_entry *e = cwb_ring_fd(r, o->fd);
    if (!e) {
        atomic_fetch_add((_Atomic uint64_t *)&h->fds_beyond_table, 1);
        return NULL;
    }
    uint64_t old = atomic_load((_Atomic uint64_t *)&e->sid);
    if ((old & CW_SID_OPEN) && e->origin == CW_ORIGIN_UNTRACKED && o->inode &&
        e->inode == o->inode) {
        /* The sampler found it in /proc before its event got here: the
         * same socket, now with its story. */
        e->origin = (uint8_t)o->origin;
        e->open_stack = o->stack;
        e->open_tid = o->tid;
        e->flags |= o->flags;
        return e;
    }
    if ((old & CW_SID_OPEN) && retire(r, e, old)) { /* its close never reached us */
        e->close_ns = o->ts;
        cwb_ring_event(r, o->ts, 0, CW_EV_CLOSE, o->fd, old & ~CW_SID_OPEN, 0, CW_CLOSE_VANISHED,
                       e->eof_count, -1);
    }
    uint64_t sid = atomic_fetch_add((_Atomic uint64_t *)&h->next_sid, 1);
    struct cw_fd_entry n = {
        .flags = o->flags,
        .family = (uint16_t)o->family,
        .type = (uint16_t)o->type,
        .origin = (uint8_t)o->origin,
        .protocol = (uint16_t)o->protocol,
        .inode = o->inode,
        .open_ns = o->ts,
        .state_ns = o->ts,
        .open_stack = o->stack,
        .open_tid = o->tid,
    };
    if (o->local)
        n.local = *o->local;
    if (o->peer)
        n.peer = *o->peer;
    n.sid = old & ~CW_SID_OPEN; /* not open until published below */
    *e = n;
    atomic_store_explicit((_Atomic uint64_t *)&e->sid, sid | CW_SID_OPEN, memory_order_release);
    atomic_fetch_add((_Atomic uint32_t *)&h->sockets_open, 1);
    if ((uint32_t)o->fd + 1 > h->fd_hwm)
        atomic_store_explicit((_Atomic uint32_t *)&h->fd_hwm, (uint32_t)o->fd + 1,
                              memory_order_release);
    cwb_ring_event(r, o->ts, o->tid, CW_EV_OPEN, o->fd, sid, o->stack,
                   cw_open_arg(o->origin, o->family, o->type), o->src_fd, (int64_t)o->inode);
    return e;
}

int cwb_ring_close(struct cwb_ring *r, int fd, uint64_t ts, uint32_t tid, int how, uint32_t stack,
                   uint32_t eof_count, int other)
{
    struct cw_fd_entry *e = cwb_ring_fd(r, fd);
    uint64_t sid = e ? atomic_load((_Atomic uint64_t *)&e->sid) : 0;
    if (!(sid & CW_SID_OPEN))
        return 0;
    /* As the preload: a close's stack is kept only when it is late. */
    uint64_t fin = cw_peer_fin_ns(e->eof_ns, e->close_wait_ns);
    if (!fin || ts <= fin + CW_PROMPT_CLOSE_NS)
        stack = 0;
    if (eof_count > e->eof_count)
        e->eof_count = eof_count;
    if (retire(r, e, sid)) {
        e->close_ns = ts;
        e->close_stack = stack;
    }
    cwb_ring_event(r, ts, tid, CW_EV_CLOSE, fd, sid & ~CW_SID_OPEN, stack, how, e->eof_count,
                   other);
    return 1;
}

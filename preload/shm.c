/*
 * shm.c - the shared-memory file of this process: its creation, its layout
 * (computed once from the environment), and what happens to it across
 * fork, exec, a change of user and exit.
 *
 * The file is created O_EXCL|O_NOFOLLOW, 0600, mapped MAP_SHARED and closed
 * at once: the program never sees an fd of ours. Pages are only touched when
 * written, so the default 40 MiB of address space costs far less memory.
 */
#include "cw.h"
#include "../common/ring_layout.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <dirent.h>

static long env_long(const char *name, long dflt, long lo, long hi)
{
    const char *s = getenv(name);
    if (!s || !*s)
        return dflt;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || v < lo || v > hi)
        return dflt;
    return v;
}

static uint64_t proc_starttime(void)
{
    struct cw_pstat st;
    return cw_pstat_read(0, &st) == 0 ? st.starttime : 0;
}

/* What the header says about this process that could change before its
 * first socket (ppid: the parent may die; argv: setproctitle), taken when
 * the image starts; the ring itself waits for the first socket. */
static struct {
    pid_t pid, ppid;
    uint64_t realtime_ns, mono_ns;
    uint32_t argv_len;
    char argv[CW_ARGV_MAX];
} start;

/* argv: the image's own, as its constructors get it (the bytes
 * /proc/self/cmdline would show, without opening it), or NULL to read
 * /proc/self/cmdline (a fork child: the parent may have rewritten it). */
void cw_shm_capture_start(pid_t pid, char *const *argv)
{
    struct timespec rt, mt;
    clock_gettime(CLOCK_REALTIME, &rt);
    clock_gettime(CLOCK_MONOTONIC, &mt);
    start.pid = pid;
    start.ppid = (pid_t)syscall(SYS_getppid);
    start.realtime_ns = (uint64_t)rt.tv_sec * 1000000000ull + (uint64_t)rt.tv_nsec;
    start.mono_ns = (uint64_t)mt.tv_sec * 1000000000ull + (uint64_t)mt.tv_nsec;
    ssize_t n = 0;
    if (argv) {
        for (int i = 0; argv[i] && (size_t)n < sizeof start.argv; i++) {
            size_t len = strnlen(argv[i], sizeof start.argv - (size_t)n - 1) + 1;
            memcpy(start.argv + n, argv[i], len);
            n += (ssize_t)len;
        }
    } else {
        n = cw_slurp("/proc/self/cmdline", start.argv, sizeof start.argv);
    }
    start.argv_len = n > 0 ? (uint32_t)n : 0;
    if (start.argv_len == sizeof start.argv)
        start.argv[sizeof start.argv - 1] = 0;
}

static void fill_identity(struct cw_header *h)
{
    pid_t pid = (pid_t)syscall(SYS_getpid);
    if (start.pid != pid) /* a fork child: it starts now */
        cw_shm_capture_start(pid, NULL);
    h->pid = start.pid;
    h->ppid = start.ppid;
    h->uid = getuid();
    h->proc_starttime = proc_starttime();
    h->start_realtime_ns = start.realtime_ns;
    h->start_mono_ns = start.mono_ns;
    h->exit_state = CW_RUNNING;
    h->exit_mono_ns = 0;
    h->heartbeat_mono_ns = start.mono_ns;

    ssize_t n = readlink("/proc/self/exe", h->exe, sizeof h->exe - 1);
    h->exe[n > 0 ? n : 0] = 0;
    memcpy(h->argv, start.argv, sizeof h->argv);
    h->argv_len = start.argv_len;
}

/*
 * A ring file is built complete before anyone can see it: created unnamed
 * (O_TMPFILE), mapped and filled, and only then linked as
 * closewatch.PID.N.ring with the first free N, so a process killed while it
 * starts leaves nothing, never an empty or all-zero ring. Where the
 * filesystem has no O_TMPFILE, the file is created under its name.
 */
struct new_file {
    int fd;      /* open until published; -1 once named */
    int unnamed; /* O_TMPFILE: not linked yet */
    char fd_path[32];
};

/* The file's name for sequence number seq, in cw.path. */
static int ring_name(int seq)
{
    int n = snprintf(cw.path, sizeof cw.path, "%s/" CW_FILE_PREFIX "%d.%d" CW_FILE_SUFFIX, cw.dir,
                     (int)syscall(SYS_getpid), seq);
    return n > 0 && (size_t)n < sizeof cw.path;
}

static struct cw_header *create_file(const struct cw_header *proto, struct new_file *nf)
{
    nf->unnamed = 1;
    nf->fd = (int)syscall(SYS_openat, AT_FDCWD, cw.dir, O_RDWR | O_TMPFILE | O_CLOEXEC, 0600);
    for (int seq = 0; nf->fd < 0 && seq < 1000; seq++) {
        nf->unnamed = 0;
        if (!ring_name(seq))
            return NULL;
        nf->fd = (int)syscall(SYS_openat, AT_FDCWD, cw.path,
                              O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (nf->fd < 0 && errno != EEXIST)
            return NULL;
    }
    if (nf->fd < 0)
        return NULL;
    snprintf(nf->fd_path, sizeof nf->fd_path, "/proc/self/fd/%d", nf->fd);
    void *map = MAP_FAILED;
    if (syscall(SYS_ftruncate, nf->fd, (long)proto->file_size) == 0)
        map = mmap(NULL, proto->file_size, PROT_READ | PROT_WRITE, MAP_SHARED, nf->fd, 0);
    if (map == MAP_FAILED) {
        if (!nf->unnamed)
            unlink(cw.path);
        syscall(SYS_close, nf->fd);
        return NULL;
    }
    return map;
}

/* Names the filled file (its magic set last) and lets go of its fd. */
static int publish_file(struct new_file *nf, struct cw_header *h)
{
    int ok = 1;
    if (nf->unnamed) {
        ok = 0;
        for (int seq = 0; !ok && seq < 1000 && ring_name(seq); seq++) {
            h->image_seq = (uint32_t)seq;
            atomic_store_explicit((_Atomic uint64_t *)&h->magic, CW_MAGIC, memory_order_release);
            if (syscall(SYS_linkat, AT_FDCWD, nf->fd_path, AT_FDCWD, cw.path, AT_SYMLINK_FOLLOW) ==
                0)
                ok = 1;
            else if (errno != EEXIST)
                break;
        }
    } else {
        unsigned seq = 0;
        const char *dot = strrchr(cw.path, '/');
        if (dot && sscanf(dot, "/" CW_FILE_PREFIX "%*d.%u", &seq) == 1)
            h->image_seq = seq;
        atomic_store_explicit((_Atomic uint64_t *)&h->magic, CW_MAGIC, memory_order_release);
    }
    syscall(SYS_close, nf->fd);
    nf->fd = -1;
    return ok ? 0 : -1;
}

void cw_shm_attach(struct cw_header *h)
{
    cw.fds = (struct cw_fd_entry *)((uint8_t *)h + h->fd_off);
    cw.stacks = (uint8_t *)h + h->stack_off;
    cw.modules = (struct cw_module *)((uint8_t *)h + h->module_off);
    cw.ring = (struct cw_event *)((uint8_t *)h + h->ring_off);
    cw.ring_mask = h->ring_cap - 1;
    cw.map_size = h->file_size;
    cw.pid = h->pid;
    atomic_store_explicit((_Atomic(struct cw_header *) *)&cw.hdr, h, memory_order_release);
}

/* The layout, from the environment: read when the image starts (the ring
 * may only be made much later, inside any hook). */
static struct cw_header proto;

void cw_shm_configure(void)
{
    const char *dir = getenv("CLOSEWATCH_DIR");
    snprintf(cw.dir, sizeof cw.dir, "%s", dir && *dir ? dir : "/dev/shm");
    cw.depth = (uint32_t)env_long("CLOSEWATCH_DEPTH", 24, 1, CW_MAX_DEPTH);
    cw.sample_ms = (uint32_t)env_long("CLOSEWATCH_SAMPLE_MS", 1000, 0, 3600000);
    long ring_mb = env_long("CLOSEWATCH_RING_MB", CW_DEFAULT_RING_MB, 1, 1024);
    long fd_cap = env_long("CLOSEWATCH_MAX_FDS", CW_DEFAULT_FD_CAP, 64, 1 << 24);

    cw_ring_layout(&proto, cw.depth, (uint32_t)fd_cap, (uint32_t)ring_mb, cw.sample_ms);
}

int cw_shm_create(void)
{
    struct new_file nf;
    struct cw_header *h = create_file(&proto, &nf);
    if (!h)
        return -1;
    *h = proto;
    fill_identity(h);
    if (publish_file(&nf, h) != 0) {
        munmap(h, proto.file_size);
        return -1;
    }
    cw_shm_attach(h);
    return 0;
}

/*
 * An exec replaced the previous image of this process: its ring, if it made
 * one, still says RUNNING. Mark every earlier ring of this pid and start
 * time as EXECED, when the image starts, whether or not it ever makes a
 * ring of its own. A pid without rings pays one failed open.
 */
void cw_shm_mark_execed_predecessors(void)
{
    uint64_t starttime = 0;
    pid_t pid = cw.pid; /* just set by cw_init, the only caller */
    for (int seq = 0; seq < 1000; seq++) {
        char p[CW_PATH_MAX + 64];
        snprintf(p, sizeof p, "%s/" CW_FILE_PREFIX "%d.%d" CW_FILE_SUFFIX, cw.dir, (int)pid, seq);
        int fd = (int)syscall(SYS_openat, AT_FDCWD, p, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT)
                break;
            continue;
        }
        struct stat st;
        void *map = MAP_FAILED;
        if (syscall(SYS_fstat, fd, &st) == 0 && st.st_uid == getuid() &&
            (size_t)st.st_size >= sizeof(struct cw_header))
            map = mmap(NULL, sizeof(struct cw_header), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        syscall(SYS_close, fd);
        if (map == MAP_FAILED)
            continue;
        if (!starttime)
            starttime = proc_starttime();
        struct cw_header *old = map;
        if (old->magic == CW_MAGIC && old->pid == pid && old->proc_starttime == starttime &&
            old->exit_state == CW_RUNNING) {
            old->exit_mono_ns = start.mono_ns;
            atomic_store_explicit((_Atomic uint32_t *)&old->exit_state, CW_EXECED,
                                  memory_order_release);
        }
        munmap(map, sizeof(struct cw_header));
    }
}

/*
 * In a fork child: the mapping we inherited is the parent's. Give the child
 * its own file, carrying over the open sockets (they are shared with the
 * parent now), then let go of the parent's mapping.
 */
void cw_shm_after_fork_child(void)
{
    struct cw_header *parent = cw.hdr;
    if (!parent)
        return;
    struct cw_fd_entry *pfds = cw.fds;
    size_t psize = cw.map_size;
    cw.hdr = NULL;

    struct new_file nf;
    struct cw_header *h = create_file(parent, &nf);
    if (!h) {
        munmap(parent, psize);
        return;
    }
    memcpy(h, parent, sizeof *h);
    h->magic = 0;
    h->write_idx = h->events_dropped = h->stacks_dropped = 0;
    h->fds_beyond_table = h->modules_dropped = 0;
    h->module_count = 0;
    h->sockets_open = 0;
    h->next_sid = 1;
    h->sampler_pid = 0;
    fill_identity(h);
    cw_shm_attach(h); /* unpublished until its table is filled */
    cw_modules_refresh();
    struct cw_fd_entry *fds = cw.fds;
    int hwm = (int)parent->fd_hwm;
    uint32_t open = 0;
    /* The parent's table is shared memory: by now the parent may already
     * have closed its copies (fork-per-connection servers do at once).
     * Our own fd table, copied by the kernel at fork, is the truth. The
     * parent's stack ids mean nothing here, and the parent reuses its fd
     * numbers and may exit: the child keeps its own copy of the stacks
     * that opened and saw EOF on what it inherited. */
    for (int i = 0; i < hwm && (uint32_t)i < h->fd_cap; i++) {
        struct stat st;
        if (!pfds[i].sid || syscall(SYS_fstat, i, &st) != 0 || !S_ISSOCK(st.st_mode) ||
            (uint64_t)st.st_ino != pfds[i].inode)
            continue;
        struct cw_fd_entry e = pfds[i];
        e.sid = h->next_sid++ | CW_SID_OPEN;
        e.flags |= CW_FD_FROM_FORK;
        e.origin = CW_ORIGIN_INHERITED;
        e.open_stack = cw_stack_copy(parent, e.open_stack);
        e.eof_stack = cw_stack_copy(parent, e.eof_stack);
        e.close_stack = 0;
        e.close_ns = 0;
        fds[i] = e;
        open++;
    }
    h->sockets_open = open;
    munmap(parent, psize);
    if (publish_file(&nf, h) != 0) {
        cw.hdr = NULL;
        munmap(h, h->file_size);
        return;
    }
    for (int i = 0; i < hwm && (uint32_t)i < h->fd_cap; i++)
        if (fds[i].sid & CW_SID_OPEN)
            cw_event(CW_EV_OPEN, i, fds[i].sid & ~CW_SID_OPEN, fds[i].open_stack,
                     cw_open_arg(CW_ORIGIN_INHERITED, fds[i].family, fds[i].type), -1,
                     (int64_t)fds[i].inode);
    cw_scan_inherited(1); /* sockets the parent's table no longer describes */
}

/*
 * A program that drops privileges after it started (nginx's and Apache's
 * workers, sshd's children) starts its sampler with the credentials it has
 * then, and the sampler must open the ring: the file (0600, ours) follows
 * the effective uid, handed over while we may still chown it. If the change
 * then fails, the program's own uid keeps the file; root reads it anyway.
 */
static void ring_follows_euid(uid_t euid)
{
    if (euid == (uid_t)-1 || euid == geteuid())
        return;
    int saved = errno;
    /* Made now, while it still can be: the ring directory may not let the
     * new user create files (a root-owned /dev/shm subdirectory). */
    if (!cw.hdr && !cw_nesting)
        cw_recording_start();
    if (!cw.hdr) {
        errno = saved;
        return;
    }
    int fd = (int)syscall(SYS_openat, AT_FDCWD, cw.path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        syscall(SYS_fchown, fd, (long)euid, -1L);
        syscall(SYS_close, fd);
    }
    errno = saved;
}

CW_EXPORT int setuid(uid_t uid)
{
    ring_follows_euid(uid);
    return REAL(setuid)(uid);
}

CW_EXPORT int seteuid(uid_t euid)
{
    ring_follows_euid(euid);
    return REAL(seteuid)(euid);
}

CW_EXPORT int setreuid(uid_t ruid, uid_t euid)
{
    ring_follows_euid(euid);
    return REAL(setreuid)(ruid, euid);
}

CW_EXPORT int setresuid(uid_t ruid, uid_t euid, uid_t suid)
{
    ring_follows_euid(euid);
    return REAL(setresuid)(ruid, euid, suid);
}

void cw_shm_mark_exit(void)
{
    struct cw_header *h = cw.hdr;
    if (!h || h->pid != getpid())
        return;
    h->exit_mono_ns = cw_now();
    atomic_store_explicit((_Atomic uint32_t *)&h->exit_state, CW_EXITED, memory_order_release);
}

/*
 * cw.h - internal interface of libclosewatch.so: the pieces the hooks share.
 *
 * Hooks call the real function first, then, only on the rare paths that
 * matter (a socket opened or closed, a read returning 0, an epoll HUP), hand
 * the result to the recorder functions below. The recorder never blocks,
 * never allocates and never changes errno.
 */
#ifndef CW_PRELOAD_H
#define CW_PRELOAD_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>

#include "../common/proc_stat.h"
#include "../common/shm_layout.h"

#define CW_HIDDEN      __attribute__((visibility("hidden")))
#define CW_EXPORT      __attribute__((visibility("default")))
#define CW_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- real functions (real.c) -------------------------------------------- */

struct cw_real {
    /* First, at offsets 0 and 8: vfork.c's assembly trampolines jump
     * through them (checked there). */
    pid_t (*vfork)(void);
    int (*clone)(int (*)(void *), void *, int, void *, ...);
    pid_t (*fork_no_handlers)(void); /* _Fork */
    int (*pipe2)(int[2], int);
    int (*socket)(int, int, int);
    int (*socketpair)(int, int, int, int[2]);
    int (*accept)(int, struct sockaddr *, socklen_t *);
    int (*accept4)(int, struct sockaddr *, socklen_t *, int);
    int (*connect)(int, const struct sockaddr *, socklen_t);
    int (*listen)(int, int);
    int (*shutdown)(int, int);
    int (*close)(int);
    int (*dup)(int);
    int (*dup2)(int, int);
    int (*dup3)(int, int, int);
    int (*fcntl)(int, int, ...);
    int (*fcntl64)(int, int, ...);
    int (*close_range)(unsigned, unsigned, int);
    void (*closefrom)(int);
    int (*fclose)(void *);
    long (*sys)(long, ...); /* syscall(); named so the syscall macro below leaves it alone */
    ssize_t (*read)(int, void *, size_t);
    ssize_t (*readv)(int, const struct iovec *, int);
    ssize_t (*recv)(int, void *, size_t, int);
    ssize_t (*recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
    ssize_t (*recvmsg)(int, struct msghdr *, int);
    int (*recvmmsg)(int, struct mmsghdr *, unsigned, int, struct timespec *);
    ssize_t (*read_chk)(int, void *, size_t, size_t);
    ssize_t (*recv_chk)(int, void *, size_t, size_t, int);
    ssize_t (*recvfrom_chk)(int, void *, size_t, size_t, int, struct sockaddr *, socklen_t *);
    int (*epoll_ctl)(int, int, int, struct epoll_event *);
    int (*epoll_wait)(int, struct epoll_event *, int, int);
    int (*epoll_pwait)(int, struct epoll_event *, int, int, const sigset_t *);
    int (*epoll_pwait2)(int, struct epoll_event *, int, const struct timespec *, const sigset_t *);
    int (*poll)(struct pollfd *, nfds_t, int);
    int (*ppoll)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *);
    int (*poll_chk)(struct pollfd *, nfds_t, int, size_t);
    int (*ppoll_chk)(struct pollfd *, nfds_t, const struct timespec *, const sigset_t *, size_t);
    int (*setuid)(uid_t);
    int (*seteuid)(uid_t);
    int (*setreuid)(uid_t, uid_t);
    int (*setresuid)(uid_t, uid_t, uid_t);
    void *(*dlopen)(const char *, int); /* libunwind, loaded when recording starts (stacks.c) */
    /* Where glibc keeps a thread's tid in its descriptor, for debuggers
     * (libthread_db): {bits, count, offset}; NULL in other libcs. */
    const uint32_t *thread_db_tid;
    void (*exit)(int);
    int (*libc_start_main)(int (*)(int, char **, char **), int, char **, void (*)(void),
                           void (*)(void), void (*)(void), void *);
};

CW_HIDDEN extern struct cw_real cw_real;
CW_HIDDEN void cw_resolve_real(void);

/* The library's own system calls must not go through its syscall() hook:
 * everything in preload/ (and common/ code compiled into it) calling
 * syscall() gets this instead. */
CW_HIDDEN long cw_raw_syscall(long nr, ...);
#define syscall cw_raw_syscall

/* Fetch a real function, resolving all of them on first use (hooks can run
 * before our constructor). */
#define REAL(name) (CW_UNLIKELY(!cw_real.name) ? (cw_resolve_real(), cw_real.name) : cw_real.name)

/* ---- process-wide state (init.c) ---------------------------------------- */

struct cw_state {
    struct cw_header *hdr; /* NULL: not recording (disabled, failed, or not yet) */
    size_t map_size;
    struct cw_fd_entry *fds;
    uint8_t *stacks;
    struct cw_module *modules;
    struct cw_event *ring;
    uint32_t ring_mask;
    uint32_t depth; /* frames per backtrace */
    pid_t pid;
    uint32_t sample_ms;
    _Atomic int sampler_state;  /* 0 idle, 1 starting/running */
    uintptr_t self_lo, self_hi; /* our own text, skipped in backtraces */
    char dir[CW_PATH_MAX];
    char path[CW_PATH_MAX]; /* our ring file */
};

CW_HIDDEN extern struct cw_state cw;

/*
 * Nesting guard. Every record path enters through cw_enter(); it fails when
 * we are already inside the library on this thread (libunwind's own calls,
 * a signal handler interrupting a record), before init, or in a child that
 * never ran our fork handler.
 */
CW_HIDDEN extern __thread int cw_nesting __attribute__((tls_model("initial-exec")));
/* Raised once the program made a child that skips our fork handler (vfork.c). */
CW_HIDDEN extern int cw_unforked_child_seen;

static inline int cw_enter(void)
{
    if (cw_nesting) {
        /* A signal handler interrupted a record on this thread, or we are
         * inside libunwind: passing through is all we may do. */
        if (cw.hdr)
            atomic_fetch_add((_Atomic uint64_t *)&cw.hdr->events_dropped, 1);
        return 0;
    }
    if (!cw.hdr)
        return 0;
    /* A child that never ran our fork handler (vfork, clone, _Fork, a raw
     * fork system call) still writes to our ring: it must record nothing,
     * and only getpid (one system call, ~90 ns here) tells it from us. Most
     * programs never make one (vfork.c), and pay nothing. */
    if (__atomic_load_n(&cw_unforked_child_seen, __ATOMIC_RELAXED) &&
        (pid_t)syscall(SYS_getpid) != cw.pid)
        return 0;
    cw_nesting++;
    return 1;
}

static inline void cw_leave(void)
{
    cw_nesting--;
}

/* CLOCK_MONOTONIC in ns: the clock of every time in the ring. */
static inline uint64_t cw_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

CW_HIDDEN void cw_init(void);

/* ---- recorder (record.c) ------------------------------------------------- */

/* Highest fd number ever tracked + 1: where scans of the table stop. */
static inline int cw_fd_hwm(void)
{
    return (int)__atomic_load_n(&cw.hdr->fd_hwm, __ATOMIC_ACQUIRE);
}

static inline struct cw_fd_entry *cw_fd(int fd)
{
    struct cw_header *h = cw.hdr;
    if (!h || fd < 0 || (uint32_t)fd >= h->fd_cap)
        return NULL;
    return &cw.fds[fd];
}

CW_HIDDEN void cw_event(uint16_t type, int fd, uint64_t sid, uint32_t stack, int64_t a0, int64_t a1,
                        int64_t a2);
/* The same, stamped with a time the caller already read. */
CW_HIDDEN void cw_event_at(uint64_t now, uint16_t type, int fd, uint64_t sid, uint32_t stack,
                           int64_t a0, int64_t a1, int64_t a2);
/* The same, with event flags (enum cw_event_flag). */
CW_HIDDEN void cw_event_flagged(uint64_t now, uint16_t flags, uint16_t type, int fd, uint64_t sid,
                                uint32_t stack, int64_t a0, int64_t a1, int64_t a2);

CW_HIDDEN uint32_t cw_stack(void);
/* The calling thread's language frames (pyframes.c), interned: a language
 * stack id, 0 if it has none (no runtime, an unsupported one, no frames). */
CW_HIDDEN uint32_t cw_lang_stack(void);
/* Looks up CPython's symbols, in the constructor (pyframes.c). */
CW_HIDDEN void cw_pyframes_init(void);
/* The calling thread's Java frames (jframes.c), interned like
 * cw_lang_stack's: none until the module map found a libjvm. */
CW_HIDDEN uint32_t cw_java_stack(void);
CW_HIDDEN void cw_jframes_after_fork(void);
/* A module the map (stacks.c) found newly loaded. */
struct dl_phdr_info;
CW_HIDDEN void cw_jframes_module(const char *path, const struct dl_phdr_info *info);
/* Interns language stack id of another ring (a fork child's copy of its
 * parent's), with its code records: 0 if it is not there or does not fit. */
CW_HIDDEN uint32_t cw_lang_stack_copy(const struct cw_header *from, uint32_t id);
/* The language tables (pyframes.c), for every runtime's frames: bytes of
 * the blob arena (NULL when full); a string copied there with its NUL; a
 * code record interned by key (fill, called once on a new record with its
 * key set, fills the rest: 0 if it cannot); a language stack interned.
 * Each returns 0 (or NULL) when its table is full, counted in lang_dropped. */
CW_HIDDEN uint8_t *cw_blob_alloc(uint32_t n, uint32_t *off);
CW_HIDDEN int cw_blob_str(const char *s, int len, uint32_t *off, uint32_t *out_len);
CW_HIDDEN uint32_t cw_code_intern(const uint64_t key[4], int (*fill)(struct cw_code *, void *),
                                  void *ctx);
CW_HIDDEN uint32_t cw_lang_intern(unsigned lang, const struct cw_lang_frame *f, int n,
                                  int truncated);
/* The stack id's native frames with language stack lang beneath them
 * (stacks.c): for frames handed over after the open (jsframes.c). */
CW_HIDDEN uint32_t cw_stack_with_lang(uint32_t id, uint32_t lang);
/* Interns a stack read from another ring (a fork child's copy of its
 * parent's): 0 if it is not there or does not fit. */
CW_HIDDEN uint32_t cw_stack_copy(const struct cw_header *from, uint32_t id);
/* The frames of stack id (from cw_stack) in *pcs; returns their number. */
CW_HIDDEN int cw_stack_pcs(uint32_t id, const uint64_t **pcs);
/* Whether a close with backtrace `stack` is made by the process's own
 * teardown (teardown.c); asked only for a close late after the peer's FIN. */
CW_HIDDEN int cw_in_teardown(uint32_t stack);
CW_HIDDEN void cw_stacks_warm_up(void);
CW_HIDDEN void cw_stacks_after_fork(void);
/* Reads the stack word at addr for a walk: 0 if it cannot be read (stacks.c). */
CW_HIDDEN int cw_stack_word(uintptr_t addr, uintptr_t *val);
/* Up to max return addresses, starting with the one in the frame record at fp
 * (fp[0] the caller's rbp, fp[1] the return address); -1 when some frame
 * needs libunwind (unwind.c). */
CW_HIDDEN int cw_unwind(uintptr_t fp, void **pcs, int max);
/* Whether n bytes at p can be read (checked once per page and thread). */
CW_HIDDEN int cw_readable(const void *p, size_t n);
CW_HIDDEN void cw_modules_refresh(void);

static inline int cw_is_tcp(int family, int type)
{
    return (family == AF_INET || family == AF_INET6) && type == SOCK_STREAM;
}

CW_HIDDEN void cw_on_open(int fd, int origin, int family, int type, int protocol, int src_fd);
/* A socket no hook saw made, called from our own contexts (constructor,
 * fork handler, sampler), never from a hook. cw_on_adopt: with what the
 * caller knows of it (the sampler, whose fd table is not the program's);
 * cw_on_found: asked of the fd itself, in our own table (inherited). */
CW_HIDDEN void cw_on_adopt(int fd, int origin, int family, int type, uint64_t inode,
                           const struct cw_fd_entry *seen);
CW_HIDDEN void cw_on_found(int fd, int origin);
/* The kernel's TCP state of the socket sid at fd (the sampler's, or at
 * exit); fin_ns: for CLOSE_WAIT, the kernel's date of the peer's FIN, or 0. */
CW_HIDDEN void cw_on_tcp_state(int fd, struct cw_fd_entry *e, uint64_t sid, uint8_t state,
                               uint64_t now, uint64_t fin_ns);
/* The socket open_sid at fd was closed behind our back (found missing, or
 * its number reused): closed now, unless it already was. */
CW_HIDDEN void cw_on_vanished(int fd, uint64_t open_sid);
CW_HIDDEN void cw_on_close(int fd, uint64_t sid_before, int how, int ret, int err, int other);

/* The sid word of fd before a call that may close it, 0 if untracked. */
static inline uint64_t cw_sid_before(int fd)
{
    struct cw_fd_entry *e = cw_fd(fd);
    return e ? __atomic_load_n(&e->sid, __ATOMIC_ACQUIRE) : 0;
}

/* Whether a close-family result needs recording: fd was a tracked socket,
 * or the call failed with EBADF on an fd we saw closed (a double close). */
static inline int cw_close_matters(int fd, uint64_t sid_before, int ret)
{
    return CW_UNLIKELY(sid_before & CW_SID_OPEN) ||
           CW_UNLIKELY(ret < 0 && errno == EBADF && sid_before != 0 && cw_fd(fd)->close_ns);
}
CW_HIDDEN void cw_on_close_range(unsigned first, unsigned last, int how);
CW_HIDDEN void cw_on_dup(int oldfd, int newfd, uint64_t newfd_sid_before);
CW_HIDDEN void cw_on_eof(int fd, int how);
CW_HIDDEN void cw_on_open_failed(int call, int err);
CW_HIDDEN void cw_on_connect(int fd, const struct sockaddr *peer, socklen_t len, int ret, int err);
/* peer: the address accept() returned (peer_len bytes), NULL to ask the kernel. */
CW_HIDDEN void cw_on_accept(int lfd, int fd, const struct sockaddr *peer, socklen_t peer_len);
CW_HIDDEN void cw_on_shutdown(int fd, int how, int ret);
CW_HIDDEN void cw_on_listen(int fd);
CW_HIDDEN void cw_on_scm_rights(const struct msghdr *msg);
/* Sets up the epoll data -> fd maps, once the ring exists (its fd_cap). */
CW_HIDDEN void cw_epoll_init(void);
CW_HIDDEN void cw_epoll_register(int fd, uint64_t data);
CW_HIDDEN void cw_on_epoll_events(const struct epoll_event *ev, int n);
CW_HIDDEN void cw_on_poll_events(const struct pollfd *fds, nfds_t n);

/* The read-family result check, inlined into every read hook: the only work
 * a successful read pays is this comparison. */
static inline void cw_check_read(int fd, ssize_t r, size_t want)
{
    if (CW_UNLIKELY(r == 0) && want > 0)
        cw_on_eof(fd, CW_EOF_READ);
}

/* What a syscall() of the read family returned (hooks_io.c), for the
 * syscall() hook (hooks_life.c); a[] are its arguments. */
CW_HIDDEN void cw_syscall_read_result(long nr, const long *a, long r);

/* ---- shared memory (shm.c) ----------------------------------------------- */

/* When the image starts: the layout (environment) and the header's facts
 * about the start (cw_shm_create makes the file later, at the first socket). */
CW_HIDDEN void cw_shm_configure(void);
CW_HIDDEN void cw_shm_capture_start(pid_t pid, char *const *argv);
CW_HIDDEN void cw_shm_mark_execed_predecessors(void);
CW_HIDDEN int cw_shm_create(void); /* creates + maps the file for this process */
/* Starts recording (creates the ring) if it has not started: at the first
 * socket. Never waits: 0 while another thread is creating it (the caller
 * drops its event, counted) or if recording is off. */
CW_HIDDEN int cw_recording_start(void);
/* Points cw at a mapped ring (ours, or, in the sampler, the program's). */
CW_HIDDEN void cw_shm_attach(struct cw_header *h);
CW_HIDDEN void cw_shm_after_fork_child(void);
CW_HIDDEN void cw_shm_mark_exit(void);

/* ---- /proc (proc.c) ---------------------------------------------------- */

/* Up to cap bytes of the file at path, read with raw system calls; -1 if it
 * cannot be opened. */
CW_HIDDEN ssize_t cw_slurp(const char *path, char *buf, size_t cap);
/* /proc/PID/stat (pid 0: our own) parsed: 0, or -1. */
CW_HIDDEN int cw_pstat_read(pid_t pid, struct cw_pstat *out);
/* In the sampler: the fds below are the program pid's, not ours. */
CW_HIDDEN void cw_proc_fds_of(pid_t pid);
/* Calls fn with each open fd number (raw getdents64, no malloc). */
CW_HIDDEN void cw_for_each_fd(void (*fn)(int fd, void *ctx), void *ctx);
/* The inode of the socket at fd, 0 if fd is not a socket (or is gone). */
CW_HIDDEN uint64_t cw_fd_socket_inode(int fd);
/* Whether fd is closed now. */
CW_HIDDEN int cw_fd_gone(int fd);

/* ---- sampler (sampler.c: the process; spawn.c: starting it) -------------- */

CW_HIDDEN void cw_sampler_init(void); /* in the constructor: where to exec it from */
CW_HIDDEN void cw_sampler_start(void);
/* The sampler process's loop (helper.c), until the program is gone. */
CW_HIDDEN void cw_sampler_run(pid_t pid, unsigned reconcile_every, unsigned long long image);
/* For programs that make their socket calls without libc (Go). */
CW_HIDDEN void cw_sampler_start_for_raw_syscalls(void);
CW_HIDDEN void cw_sampler_after_fork(void);
/* In the sampler, after each round: a point of the count series (series.c). */
CW_HIDDEN void cw_series_sample(void);

/* ---- in-program scans (scan.c) ------------------------------------------- */

/* Records the sockets open now that the table does not describe: inherited
 * across exec, or (from_fork) from the parent. */
CW_HIDDEN void cw_scan_inherited(int from_fork);
/* Whether any fd open now is a socket (one look at /proc/self/fd). */
CW_HIDDEN int cw_has_inherited_socket(void);
/* At exit, the kernel's state of every socket still open. */
CW_HIDDEN void cw_final_snapshot(void);

#endif

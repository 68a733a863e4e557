/*
 * shm_layout.h - the one definition of the shared-memory file that
 * libclosewatch.so writes and the closewatch analyzer reads.
 *
 * A file is a header followed by sections, each at an offset the header
 * names: the fd table (indexed by fd number: what is open now), the stack
 * table (interned backtraces), the module table (what was mapped, with
 * build-ids, for offline symbolization), the event ring (history), and the
 * language sections (a runtime's own frames: interned language stacks, code
 * records, and the byte arena holding their names and line tables), and the
 * count series (open and CLOSE_WAIT sockets over the whole life).
 *
 * Everything is little-endian, fixed-size and position-independent: no
 * pointers, only offsets and indices. The reader (shm_reader.c) trusts none
 * of it before checking bounds. Bump CW_LAYOUT_VERSION on any change.
 */
#ifndef CW_SHM_LAYOUT_H
#define CW_SHM_LAYOUT_H

#include <stdint.h>

#define CW_MAGIC          0x31484354574c4357ULL /* "WCLWTCH1" read as LE */
#define CW_LAYOUT_VERSION 5u
#define CW_FILE_PREFIX    "closewatch."
#define CW_FILE_SUFFIX    ".ring"

/* The pid in a ring file's name, CW_FILE_PREFIX "PID.SEQ" CW_FILE_SUFFIX,
 * or -1 if name is not one. */
static inline int cw_ring_file_pid(const char *name)
{
    const char *s = name + sizeof CW_FILE_PREFIX - 1;
    for (int i = 0; i < (int)sizeof CW_FILE_PREFIX - 1; i++)
        if (name[i] != CW_FILE_PREFIX[i])
            return -1;
    long pid = 0;
    int digits = 0;
    for (; *s >= '0' && *s <= '9' && digits < 10; s++, digits++)
        pid = pid * 10 + (*s - '0');
    if (!digits || pid > 0x7fffffff || *s++ != '.')
        return -1;
    for (digits = 0; *s >= '0' && *s <= '9'; s++)
        digits++;
    for (int i = 0; i < (int)sizeof CW_FILE_SUFFIX; i++) /* the NUL too */
        if (s[i] != CW_FILE_SUFFIX[i])
            return -1;
    return digits ? (int)pid : -1;
}

#define CW_EXE_MAX      256
#define CW_ARGV_MAX     1024
#define CW_PATH_MAX     256
#define CW_BUILD_ID_MAX 32
#define CW_MAX_DEPTH    64

/* header.exit_state */
enum cw_exit_state {
    CW_RUNNING = 0,
    CW_EXITED = 1, /* destructor ran: exit() or return from main */
    CW_EXECED = 2, /* a later image of the same process took over */
};

/* header.recorder: who writes the events. */
enum cw_recorder {
    CW_REC_PRELOAD = 0, /* libclosewatch.so inside the process */
    CW_REC_BPF = 1,     /* closewatch's kernel-side recorder (bpf/), from outside */
};

/* Socket-level origin: how the fd came to exist. */
enum cw_origin {
    CW_ORIGIN_NONE = 0,
    CW_ORIGIN_SOCKET,     /* socket() */
    CW_ORIGIN_SOCKETPAIR, /* socketpair() */
    CW_ORIGIN_ACCEPT,     /* accept()/accept4() */
    CW_ORIGIN_DUP,        /* dup/dup2/dup3/F_DUPFD of a tracked socket */
    CW_ORIGIN_INHERITED,  /* open when this image started (fork parent or exec) */
    CW_ORIGIN_RECEIVED,   /* SCM_RIGHTS through recvmsg() */
    CW_ORIGIN_UNTRACKED,  /* found in /proc/self/fd, never seen through a hook */
};

/* fd entry flags */
enum cw_fd_flag {
    CW_FD_CONNECTED = 1u << 0,      /* connect() succeeded or was started (EINPROGRESS) */
    CW_FD_LISTENING = 1u << 1,      /* listen() */
    CW_FD_SHUT_RD = 1u << 2,        /* shutdown(SHUT_RD or SHUT_RDWR) */
    CW_FD_SHUT_WR = 1u << 3,        /* shutdown(SHUT_WR or SHUT_RDWR): we sent FIN */
    CW_FD_EOF_POLLED = 1u << 4,     /* EOF seen via epoll/poll RDHUP/HUP, not read */
    CW_FD_FROM_FORK = 1u << 5,      /* copied from the parent at fork: shared with it */
    CW_FD_CLOSED_AT_EXIT = 1u << 6, /* closed by the process's teardown, not its code */
};

/* fd_entry.sid carries this bit while the fd is open; it is set and cleared
 * with atomic exchange/compare-exchange so that a close racing with a reuse
 * of the same fd number by another thread cannot close the newcomer. */
#define CW_SID_OPEN ((uint64_t)1 << 63)

/* A close within this long of the peer's FIN is prompt, never a finding
 * (late_close). The recorder takes a close's backtrace only when the close
 * is later than this, the one case a report shows it. */
#define CW_PROMPT_CLOSE_NS 10000000ull /* 10 ms */

/* When the peer's FIN came, as far as we know: the first of the EOF seen
 * by the program and the CLOSE_WAIT seen by the sampler; 0 if neither. */
static inline uint64_t cw_peer_fin_ns(uint64_t eof_ns, uint64_t close_wait_ns)
{
    if (eof_ns && close_wait_ns)
        return eof_ns < close_wait_ns ? eof_ns : close_wait_ns;
    return eof_ns ? eof_ns : close_wait_ns;
}

/* The peer's FIN as the program's part of it: a FIN that came before the
 * program had the socket (it waited in the accept queue) counts from the
 * open, since nothing could close it earlier. Not for an adopted socket,
 * whose open_ns is only when the sampler found it. */
static inline uint64_t cw_fin_since_open(uint64_t fin_ns, uint64_t open_ns, int adopted)
{
    return fin_ns && fin_ns < open_ns && !adopted ? open_ns : fin_ns;
}

/* Kernel TCP states as in include/net/tcp_states.h. */
enum cw_tcp_state {
    CW_TCP_UNKNOWN = 0,
    CW_TCP_ESTABLISHED = 1,
    CW_TCP_SYN_SENT,
    CW_TCP_SYN_RECV,
    CW_TCP_FIN_WAIT1,
    CW_TCP_FIN_WAIT2,
    CW_TCP_TIME_WAIT,
    CW_TCP_CLOSE,
    CW_TCP_CLOSE_WAIT,
    CW_TCP_LAST_ACK,
    CW_TCP_LISTEN,
    CW_TCP_CLOSING,
};

/* An address, compact: IPv4/IPv6 as bytes + port; AF_UNIX as a truncated path. */
struct cw_addr {
    uint16_t family; /* AF_INET, AF_INET6, AF_UNIX or 0 */
    uint16_t port;   /* host byte order */
    uint32_t scope_id;
    uint8_t bytes[24]; /* in: 4 bytes, in6: 16 bytes, unix: path prefix ('@' = abstract) */
};

/*
 * One per fd number. Written only by the thread operating on that fd; the
 * analyzer copies an entry and checks that sid did not change meanwhile.
 * Closed entries keep their last socket's data (no CW_SID_OPEN, close_ns set)
 * until the number is reused.
 */
struct cw_fd_entry {
    uint64_t sid;          /* socket id (unique per image, never 0) | CW_SID_OPEN */
    uint32_t shut_how;     /* bitmask of 1 << how for each shutdown() call */
    uint32_t flags;        /* enum cw_fd_flag */
    uint16_t family, type; /* AF_*, SOCK_STREAM/DGRAM/... (no flags) */
    uint8_t origin;        /* enum cw_origin */
    uint8_t tcp_state;     /* last kernel state the sampler saw */
    uint16_t protocol;
    uint64_t inode; /* st_ino of the socket */
    struct cw_addr local, peer;
    uint64_t open_ns; /* CLOCK_MONOTONIC */
    uint64_t eof_ns;  /* first EOF observed by the program; 0 = none */
    uint64_t close_ns;
    uint64_t close_wait_ns; /* when the sampler first saw CLOSE_WAIT; 0 = never */
    uint64_t state_ns;      /* when tcp_state last changed */
    uint32_t open_stack, eof_stack, close_stack; /* stack ids, 0 = none */
    uint32_t eof_count;                          /* read()==0 / RDHUP reports on this socket */
    uint32_t open_tid;
    /* The stack of the request a connection was dialed for, when the
     * dial ran where no frame of the program is (Go's net/http dial
     * goroutine, bpf/go_probes.c); 0 = none. */
    uint32_t request_stack;
};

/*
 * Interned backtrace. Slot i has id i+1. hash is published first (claiming
 * the slot), pcs next, and ready last with a release store.
 */
struct cw_stack_slot {
    uint64_t hash;  /* 0 = free */
    uint32_t ready; /* 1 once depth, lang_stack and pcs are valid */
    uint32_t depth;
    uint32_t lang_stack; /* the language frames run beneath these pcs (1-based id
                            in the language stack table), 0 = none */
    uint32_t pad;
    uint64_t pcs[]; /* header.stack_depth entries */
};

/*
 * Language frames (layout v3). A hybrid stack is a native stack slot whose
 * lang_stack names an interned sequence of a runtime's own frames, innermost
 * first. Each frame is (code record, position): the code record holds what
 * never changes for a function (name, file, first line, line table), written
 * once, when first seen, so a post-mortem names it; the position (an
 * instruction offset, a bytecode index) is turned into a line by the
 * analyzer (lang_frames.c), off the hot path.
 *
 * Merging: a runtime's frames are run by native frames of its evaluation
 * loop, whose code range the runtime record gives (eval_lo..eval_hi). A frame
 * with CW_LF_ENTRY is the outermost one its evaluation-loop call ran: at the
 * native stack's k-th evaluation-loop frame stand the language frames after
 * the (k-1)-th entry frame up to the k-th. Frames left over when the native
 * stack ends (it is capped at stack_depth; language stacks are not) follow it.
 */
enum cw_lang {
    CW_LANG_NATIVE = 0, /* C, C++, anything with a native pc */
    CW_LANG_PYTHON = 1, /* CPython */
    CW_LANG_JAVA = 2,
    CW_LANG_JAVASCRIPT = 3,
    CW_LANG_MAX = 4,
};

/* header.runtimes[lang].status */
enum cw_runtime_status {
    CW_RT_ABSENT = 0,      /* not in this process (or not looked for yet) */
    CW_RT_WALKED = 1,      /* found, its frames are recorded */
    CW_RT_UNSUPPORTED = 2, /* found, not walked: reason says why (native frames only) */
};

struct cw_runtime {
    uint32_t status;           /* enum cw_runtime_status; release-stored last */
    uint32_t version;          /* the runtime's own number (CPython: PY_VERSION_HEX) */
    uint64_t eval_lo, eval_hi; /* native code running its frames; 0, 0 = unknown */
    char name[32];             /* "CPython 3.11.7" */
    char reason[96];           /* why not walked (UNSUPPORTED), or what was not (WALKED) */
};

#define CW_LANG_DEPTH 128        /* frames per language stack: deeper ones are cut */
#define CW_LF_ENTRY   (1u << 31) /* cw_lang_frame.pos: outermost frame of its eval call */
#define CW_LF_POS_MASK                                                                             \
    0x7fffffffu /* cw_lang_frame.pos: the position (CPython: byte                                  \
                   offset of the instruction in the code) */

struct cw_lang_frame {
    uint32_t code; /* 1-based id in the code table */
    uint32_t pos;  /* position | CW_LF_ENTRY */
};

/* Interned language stack; same protocol as cw_stack_slot. Slot i has id i+1. */
struct cw_lang_stack_slot {
    uint64_t hash;      /* 0 = free */
    uint32_t ready;     /* 1 once the rest is valid */
    uint32_t depth;     /* frames used, <= header.lang_depth */
    uint16_t lang;      /* enum cw_lang */
    uint16_t truncated; /* 1: the runtime's stack went deeper than lang_depth */
    uint32_t pad;
    struct cw_lang_frame frames[]; /* header.lang_depth entries */
};

/*
 * A function as the runtime knows it, interned by the identity of the live
 * object (for CPython: the code object's address with its filename, qualname
 * and line table objects and first line, all re-read at each hit, so a code
 * object freed and another made at its address gives a new record, never a
 * stale name). Strings and the line table live in the blob arena; the
 * strings are NUL-terminated (the NUL not counted in *_len).
 */
struct cw_code {
    uint64_t hash;   /* 0 = free */
    uint64_t key[4]; /* runtime-specific identity */
    uint32_t ready;  /* release-stored last */
    uint16_t lang;   /* enum cw_lang */
    uint16_t pad;
    uint32_t version; /* runtime version: the line table's format */
    int32_t first_line;
    uint32_t name_off, name_len;   /* qualified name */
    uint32_t file_off, file_len;   /* source file as the runtime names it */
    uint32_t lines_off, lines_len; /* line table (CPython: co_linetable); 0 = none */
};

struct cw_module {
    uint64_t bias;       /* dlpi_addr: runtime address - link address */
    uint64_t start, end; /* runtime address range of its PT_LOAD segments */
    uint64_t loaded_ns;  /* when we first saw it */
    uint32_t build_id_len;
    uint32_t ready; /* release-stored last */
    uint8_t build_id[CW_BUILD_ID_MAX];
    char path[CW_PATH_MAX]; /* "" for the main program is replaced by exe */
};

/* The module of a map (mods[0..n)) that covers pc. The map is append-only,
 * so where a range was reused after a dlclose the last entry is the one
 * mapped now. */
static inline const struct cw_module *cw_module_at(const struct cw_module *mods, uint32_t n,
                                                   uint64_t pc)
{
    for (uint32_t i = n; mods && i-- > 0;)
        if (pc >= mods[i].start && pc < mods[i].end)
            return &mods[i];
    return (const struct cw_module *)0;
}

/*
 * Event ring slot. seq == index + 1 once committed; 0 while being written.
 * A reader expecting index i that finds any other value knows the record is
 * torn (writer died or is still writing) or was overwritten.
 */
struct cw_event {
    uint64_t seq;
    uint64_t time_ns; /* CLOCK_MONOTONIC */
    uint64_t sid;
    int32_t fd;
    uint16_t type;  /* enum cw_event_type */
    uint16_t flags; /* enum cw_event_flag */
    uint32_t tid;
    uint32_t stack;
    int64_t arg0; /* see enum cw_event_type */
    int64_t arg1;
    int64_t arg2;
};

enum cw_event_type {
    CW_EV_NONE = 0,
    CW_EV_OPEN,         /* arg0 = origin | family << 8 | type << 24, arg1 = source fd
                           (dup, accept: listener) or -1, arg2 = inode */
    CW_EV_CONNECT,      /* arg0 = return value, arg1 = errno */
    CW_EV_EOF,          /* first EOF; arg0 = how (enum cw_eof_how) */
    CW_EV_SHUTDOWN,     /* arg0 = how, arg1 = return value */
    CW_EV_CLOSE,        /* arg0 = how (enum cw_close_how), arg1 = eof_count,
                           arg2 = the fd dup2'ed over it, or -1 */
    CW_EV_STATE,        /* kernel state change; arg0 = new tcp state, arg1 = old */
    CW_EV_ERROR,        /* arg0 = errno, arg1 = call (enum cw_call), arg2 = sockets open */
    CW_EV_DOUBLE_CLOSE, /* close() of an fd we saw closed, returning EBADF;
                           sid = the socket closed before */
    CW_EV_TYPE_MAX,
};

/* event.flags */
/* CW_EV_OPEN's arg0: origin in bits 0-7, family in 8-23, socket type (no
 * SOCK_NONBLOCK/SOCK_CLOEXEC flags) in 24-39. */
static inline int64_t cw_open_arg(int origin, int family, int type)
{
    return (int64_t)origin | (int64_t)family << 8 | (int64_t)type << 24;
}
static inline int cw_open_arg_origin(int64_t arg0)
{
    return (int)(arg0 & 0xff);
}
static inline int cw_open_arg_family(int64_t arg0)
{
    return (int)((arg0 >> 8) & 0xffff);
}
static inline int cw_open_arg_type(int64_t arg0)
{
    return (int)((arg0 >> 24) & 0xffff);
}

enum cw_event_flag {
    /* A close made by the process's own teardown (after main returned or
     * exit() was called, in CPython's finalization, in Perl's or Ruby's
     * clean-up): the program never closed the socket, its runtime did on
     * the way out. Set only on a close that came late after the peer's FIN. */
    CW_EVF_AT_EXIT = 1u << 0,
};

enum cw_eof_how { CW_EOF_READ = 1, CW_EOF_RDHUP = 2, CW_EOF_HUP = 3 };

enum cw_close_how {
    CW_CLOSE_CLOSE = 1,
    CW_CLOSE_DUP2,
    CW_CLOSE_RANGE,
    CW_CLOSE_FCLOSE,
    CW_CLOSE_SYSCALL,  /* syscall(SYS_close) */
    CW_CLOSE_VANISHED, /* closed behind our back: found missing, or its number reused */
};

enum cw_call { CW_CALL_SOCKET = 1, CW_CALL_ACCEPT, CW_CALL_SOCKETPAIR, CW_CALL_DUP };

struct cw_header {
    uint64_t magic;
    uint32_t version;
    uint32_t header_size; /* sizeof(struct cw_header) */
    uint64_t file_size;

    int32_t pid, ppid;
    uint32_t uid;
    uint32_t exit_state;     /* enum cw_exit_state */
    uint64_t proc_starttime; /* /proc/self/stat field 22 (clock ticks since boot) */
    uint64_t start_realtime_ns, start_mono_ns;
    uint64_t exit_mono_ns;      /* set with exit_state */
    uint64_t heartbeat_mono_ns; /* last time the sampler ran */
    uint32_t sample_ms;
    uint32_t image_seq; /* 0 for the first image, +1 per exec */

    uint64_t fd_off;
    uint32_t fd_cap, fd_entry_size;
    uint64_t stack_off;
    uint32_t stack_cap, stack_slot_size, stack_depth, pad0;
    uint64_t module_off;
    uint32_t module_cap, module_entry_size;
    uint64_t ring_off;
    uint32_t ring_cap, event_size; /* ring_cap is a power of two */

    /* counters, updated with atomics by the writer */
    uint64_t write_idx;        /* events claimed; the newest is write_idx - 1 */
    uint64_t events_dropped;   /* not written: library busy, vfork child, ... */
    uint64_t stacks_dropped;   /* stack table full: event carries stack 0 */
    uint64_t fds_beyond_table; /* fd numbers >= fd_cap: not tracked */
    uint64_t modules_dropped;
    uint32_t module_count; /* slots claimed */
    uint32_t sockets_open; /* tracked sockets open now */
    uint64_t next_sid;
    uint32_t fd_hwm;     /* highest fd number ever tracked + 1 */
    int32_t sampler_pid; /* the sampler process (nobody's child: see preload/spawn.c), 0 if none */

    char exe[CW_EXE_MAX];
    uint32_t argv_len; /* bytes used in argv: NUL-separated arguments */
    char argv[CW_ARGV_MAX];

    /* language frames (layout v3) */
    struct cw_runtime runtimes[CW_LANG_MAX]; /* indexed by enum cw_lang */
    uint64_t lang_stack_off;
    uint32_t lang_stack_cap, lang_stack_slot_size, lang_depth, code_cap; /* caps: powers of two */
    uint64_t code_off;
    uint64_t blob_off;
    uint32_t blob_size;
    uint32_t blob_used;    /* bytes claimed (atomic fetch_add) */
    uint64_t lang_dropped; /* language stacks or code records that did not fit */
    /* The count series (struct cw_series_point[series_cap] at series_off):
     * series_n points, oldest first, each standing for series_stride
     * sampler rounds. When it is full the sampler merges neighbours and
     * doubles the stride, so it always spans the whole life. The sampler
     * alone writes it, with series_gen odd while it does. */
    uint64_t series_off;
    uint32_t series_cap, series_n, series_stride, series_gen;
    /* Layout v5. The bpf recorder may start on a process already running
     * (`watch --record`) and stop before it ends: the sockets it did not see
     * made have no stack, and the report says why. */
    uint32_t recorder; /* enum cw_recorder */
    uint32_t pad1;
    uint64_t attach_mono_ns; /* the recorder began on a running process; 0 = from its start */
    uint64_t detach_mono_ns; /* the recorder stopped while it ran; 0 = not (yet) */
};

/* One point of the count series: the program's tracked sockets open and in
 * CLOSE_WAIT, the most in any of the rounds the point stands for. */
struct cw_series_point {
    uint64_t mono_ns; /* the last of those rounds */
    uint32_t open, close_wait;
};

#define CW_SERIES_CAP 512 /* points kept: 8 KiB */

#define CW_HEADER_RESERVED 4096 /* the fd table starts at or after this */

/* The sizes both sides agree on: a change here is a layout change (bump
 * CW_LAYOUT_VERSION), never an accident of padding or of a compiler. */
_Static_assert(sizeof(struct cw_addr) == 32, "struct cw_addr changed size");
_Static_assert(sizeof(struct cw_fd_entry) == 160, "struct cw_fd_entry changed size");
_Static_assert(sizeof(struct cw_stack_slot) == 24, "struct cw_stack_slot changed size");
_Static_assert(sizeof(struct cw_module) == 328, "struct cw_module changed size");
_Static_assert(sizeof(struct cw_event) == 64, "struct cw_event changed size");
_Static_assert(sizeof(struct cw_header) == 2224, "struct cw_header changed size");
_Static_assert(sizeof(struct cw_lang_frame) == 8, "struct cw_lang_frame changed size");
_Static_assert(sizeof(struct cw_lang_stack_slot) == 24, "struct cw_lang_stack_slot changed size");
_Static_assert(sizeof(struct cw_runtime) == 152, "struct cw_runtime changed size");
_Static_assert(sizeof(struct cw_code) == 80, "struct cw_code changed size");
_Static_assert(sizeof(struct cw_series_point) == 16, "struct cw_series_point changed size");
_Static_assert(sizeof(struct cw_header) <= CW_HEADER_RESERVED, "header beyond its reserved space");

#endif

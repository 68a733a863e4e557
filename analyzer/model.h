/*
 * model.h - what the analyzer knows: processes (one per ring file or live
 * pid), the sockets they held, and the findings drawn from them. Every
 * report format reads this and nothing else.
 */
#ifndef CW_MODEL_H
#define CW_MODEL_H

#include <stdint.h>
#include <stdio.h>

#include "../common/shm_reader.h"
#include "kinds.h"

/* How the program learned (or not) that the peer closed. */
enum cw_eof { CW_EOF_NONE, CW_EOF_OBSERVED, CW_EOF_UNREAD, CW_EOF_UNKNOWN };

/* How the recorded life of a process ended. */
enum cw_end { CW_END_RUNNING, CW_END_EXITED, CW_END_EXECED, CW_END_DIED, CW_END_NO_RING };

struct cw_process {
    char ring_path[4096]; /* "" when there is no ring (kernel view only) */
    struct cw_ring ring;  /* kept mapped for stacks and modules */
    int has_ring;
    int pid, ppid;
    char exe[CW_EXE_MAX];
    char cmdline[CW_ARGV_MAX]; /* argv joined with spaces */
    uint64_t start_realtime_ns, start_mono_ns;
    uint64_t end_mono_ns; /* now (live), exit/exec time, or last sign of life */
    enum cw_end end;
    uint64_t events, overwritten, torn, dropped, stacks_dropped, fds_beyond_table;
    struct cw_module *modules; /* copied out of the ring */
    uint32_t nmodules;
    int sockets_seen, sockets_open;
    /* A live process's sockets as the kernel showed them at our look. */
    struct {
        int valid, sockets, non_tcp;
        int fds_open;       /* -1: unknown */
        long fds_limit;     /* soft RLIMIT_NOFILE, -1: unknown */
        int tcp_states[12]; /* by enum cw_tcp_state */
    } kernel;
};

struct cw_timeline_entry {
    uint64_t mono_ns;
    uint16_t type; /* enum cw_event_type */
    int64_t arg0;
    uint32_t stack;
};

#define CW_TIMELINE_MAX 12

struct cw_finding {
    enum cw_kind kind;
    struct cw_process *proc;
    int fd;
    uint64_t sid, inode;
    int family, type, origin;
    struct cw_addr local, peer;
    enum cw_eof eof;
    int eof_how; /* enum cw_eof_how when observed */
    uint32_t eof_count;
    int closed; /* 1 if close() (or a relative) was called */
    int close_how;
    /* Closed only by the process's own teardown (exit, interpreter
     * shutdown): a close_wait finding, judged up to that close. */
    int closed_at_exit;
    int tcp_state;                                     /* last known kernel state */
    uint32_t recv_q;                                   /* bytes unread, live kernel view only */
    uint64_t open_ns, eof_ns, close_ns, close_wait_ns; /* CLOCK_MONOTONIC, 0 = unknown */
    double seconds_in_close_wait;
    double age_seconds;                          /* open to end (or close) */
    uint32_t open_stack, eof_stack, close_stack; /* ids in proc's ring, 0 = none */
    /* The request a connection was dialed for, when the dial ran where the
     * program has no frame (Go's net/http): an id in proc's ring, 0 = none. */
    uint32_t request_stack;
    /* The ring open_stack belongs to: proc, or for a socket inherited across
     * fork or exec, the process (image) that opened it. */
    struct cw_process *open_proc;
    /* An accepted socket's listener, when the ring still knows it (fd -1:
     * unknown): where the server was made, which an event loop's accept
     * stack does not say. open_proc as above (a pre-fork server's children
     * inherit it). */
    struct {
        int fd, origin;
        uint64_t inode;
        uint32_t open_stack;
        struct cw_process *open_proc;
    } listener;
    int err;               /* emfile: the errno; double_close: EBADF */
    uint32_t sockets_open; /* emfile: tracked sockets open at the failure */
    int suppressed;        /* index+1 of the suppression that hid it */
    struct cw_timeline_entry timeline[CW_TIMELINE_MAX];
    int ntimeline;
};

struct cw_options {
    double grace_s;          /* --grace, default 5 */
    uint32_t spin_threshold; /* eof_spin from this many read()==0, default 100 */
    int include_info;        /* report open_at_exit */
    int all_frames;          /* --frames=all: runtime internals not folded */
};

struct cw_analysis {
    struct cw_options opt;
    uint64_t now_mono_ns, now_realtime_ns;
    struct cw_process **procs;
    int nprocs;
    struct cw_finding *findings;
    int nfindings, cap;
    int young_close_wait; /* sockets in CLOSE_WAIT for less than the grace */
    /* Views `closewatch run` took of its processes while they lived: one
     * whose ring ends in death (a Go program, a SIGKILL) is judged with its
     * last view as well, matched by pid and start time. */
    const struct cw_kview *const *last_views;
    int nlast_views;
};

void cw_analysis_init(struct cw_analysis *a, const struct cw_options *opt);
void cw_analysis_free(struct cw_analysis *a);

/*
 * Adds the process recorded in ring file `path` (live or dead). Returns 0,
 * or an enum cw_ring_err with a one-line message in err.
 */
int cw_analyze_ring(struct cw_analysis *a, const char *path, char *err, size_t errlen);

/*
 * Adds pid, live: its rings in dir (if any) plus the kernel's view. Returns
 * 0, or -1 with a message (no such process, not ours).
 */
int cw_analyze_pid(struct cw_analysis *a, int pid, const char *dir, char *err, size_t errlen);

/* Adds a process known only from a view the kernel gave of it (no ring: a
 * static binary, a process no preload reached), judged up to end_mono_ns. */
struct cw_kview;
void cw_analyze_kernel_view(struct cw_analysis *a, const struct cw_kview *kv, const char *exe,
                            uint64_t end_mono_ns);

/* Ring files in dir (pid 0: all of this user's); returns a malloc'd array. */
int cw_find_rings(const char *dir, int pid, char ***paths);
void cw_free_paths(char **paths, int n);

/* The process whose ring holds f's open stack (hand-built findings may
 * leave open_proc unset: then it is f's own). */
static inline struct cw_process *cw_open_proc(const struct cw_finding *f)
{
    return f->open_proc ? f->open_proc : f->proc;
}

/* Gives sockets inherited across fork or exec the open stack recorded by the
 * parent (or previous image) that opened them, when its ring was analyzed too. */
void cw_analysis_link_inherited(struct cw_analysis *a);

const char *cw_eof_name(enum cw_eof e);
const char *cw_end_name(enum cw_end e);

/* Groups of unsuppressed findings that share kind and open stack, worst first. */
struct cw_group {
    int *members; /* indices into a->findings */
    int n;
    enum cw_kind kind;
};
int cw_group_findings(const struct cw_analysis *a, struct cw_group **groups);
void cw_free_groups(struct cw_group *g, int n);

#endif

/*
 * view.h - the resolved view of an analysis: what every report format and
 * `watch` print, and all they may look at. Built once, after suppressions:
 * findings in group order (worst group first, suppressed findings last),
 * each with its open, EOF and close stacks already symbolized (closewatch's
 * own frames removed) and the frame that places it in the code, every fact
 * already in words (addresses, states, origins), the counts and the
 * SUMMARY line. Renderers format this and nothing else: they do not see the
 * model, the ring reader or the symbolizer.
 *
 * Everything a view points to lives until cw_view_free; the analysis and
 * the symbolizer it was built from must outlive it.
 */
#ifndef CW_VIEW_H
#define CW_VIEW_H

#include <stdint.h>

#include "kinds.h"

struct cw_vframe {
    uint64_t address;     /* runtime address; 0 for a frame that has none */
    const char *module;   /* NULL if no module covers it */
    const char *function; /* NULL if unknown */
    const char *file;     /* NULL if unknown */
    int line, column;     /* 0 if unknown */
    int inlined;          /* inlined into the next frame */
    /* What the frame is written in: "c" (native code: C, C++ and anything
     * symbolized through ELF and DWARF), "python", "java", "javascript". */
    const char *language;
    /* The address as text ("0x00007f..."), or for a runtime's frame, which
     * has none, its language ("[python]"): what listings print first. */
    char address_text[20];
    int system; /* in a system library (/lib, /usr/lib) */
};

struct cw_vstack {
    const struct cw_vframe *frames; /* innermost first */
    int n;
    /* The frame that places the stack in the program's own code: the first
     * with a source line outside system libraries (or any with a line, or
     * the first frame); NULL when the stack is empty. */
    const struct cw_vframe *at;
    int folded; /* runtime-internal frames left out (--frames=all shows them) */
};

/* A point of a process's count series: its tracked sockets open and in
 * CLOSE_WAIT (the most since the point before). */
struct cw_vpoint {
    double t; /* seconds since the process started */
    int open, close_wait;
};

struct cw_vprocess {
    int pid, ppid;
    const char *exe, *cmdline; /* cmdline "" when unknown */
    const char *ring;          /* NULL: no ring (kernel view only) */
    int has_ring;
    const char *state;   /* running, exited, execed, died, no ring */
    const char *started; /* ISO 8601, NULL when unknown */
    double duration_s;
    int sockets_seen, sockets_open;
    uint64_t events, overwritten, torn, dropped, stacks_dropped;
    /* A live process's sockets as the kernel showed them (has_kernel_view). */
    int has_kernel_view, kernel_sockets, non_tcp;
    /* A runtime found whose frames were not recorded, and why ("CPython
     * 3.9.18: no frame walker for CPython 3.9; native frames only"), or NULL. */
    const char *runtime_note;
    /* Who recorded it ("preload", "bpf"; NULL without a ring) and, for the
     * bpf recorder started on a running process or stopped before its end,
     * when (seconds since the process started; -1: not) and what that
     * means for its stacks, in a sentence (NULL otherwise). */
    const char *recorder;
    double attached_t, detached_t;
    const char *record_note;
    int fds_open;   /* fds held; -1 unknown */
    long fds_limit; /* its soft limit (RLIMIT_NOFILE); -1 unknown */
    struct {
        const char *name; /* ESTABLISHED, CLOSE_WAIT, ... */
        int n;
    } tcp_states[12]; /* the states held by any socket, in the kernel's order */
    int ntcp_states;
    /* The counts over the process's life as the sampler kept them, oldest
     * first; none without a ring or a sampler. */
    const struct cw_vpoint *series;
    int nseries;
};

struct cw_vevent {
    double t;          /* seconds since the process started */
    const char *event; /* open, eof, close, ... */
    char detail[48];   /* what the event's argument says, "" if nothing */
};

#define CW_VTIMELINE_MAX 12

struct cw_vfinding {
    const struct cw_kind_info *kind;
    int group; /* index into the view's groups; -1 when suppressed */
    const struct cw_vprocess *proc;
    /* The process whose ring recorded the open stack when it is not proc
     * (a socket inherited across fork or exec); else NULL. */
    const struct cw_vprocess *opener;
    int fd;
    uint64_t socket_id, inode;
    const char *family, *origin; /* inet, inet6, unix...; accept, connect, inherited... */
    int inherited;               /* origin is inherited */
    char local[80], peer[80];    /* "" when unknown */
    const char *eof;             /* none, observed, unread, unknown */
    const char *eof_how;         /* read, rdhup, hup; NULL when no EOF was seen */
    int eof_by_read;             /* the EOF was a read() returning 0 */
    const char *eof_sentence;    /* what eof means here, NULL for none */
    uint32_t eof_count;
    double seconds_in_close_wait, age_seconds;
    /* Seconds since the process started (for timelines); -1 when unknown:
     * opened, the peer's FIN (or the sampler's first sight of CLOSE_WAIT),
     * closed. */
    double open_t, eof_t, close_t;
    int closed, closed_at_exit;
    const char *close_how; /* NULL unless closed */
    const char *tcp_state;
    uint32_t recv_q;
    const char *errno_name; /* emfile: EMFILE or ENFILE; else NULL */
    uint32_t sockets_open;  /* emfile: tracked sockets open at the failure */
    /* The rule that hid it (1-based index into the view's rules), or 0. */
    int suppressed;
    struct cw_vstack open, eof_stack, close;
    /* An accepted socket's listener and where it was opened (its socket()
     * or its inheritance): the server an event loop accepted for. fd -1
     * and an empty stack when unknown. */
    int listener_fd;
    struct cw_vstack listener;
    /* The request a connection was dialed for, when the dial ran where
     * the program has no frame (Go's net/http dial goroutine): then it
     * places the finding. Empty when unknown; then, for such a dial,
     * request_note says in one sentence why ("" otherwise). */
    struct cw_vstack request;
    char request_note[240];
    /* The open stack placed at net/http's dial instead (the request being
     * unknown), for `placed`. */
    struct cw_vstack dial;
    /* What the open stack is, as a label ("opened (accept) at:", "opened by
     * the parent process (pid 7), inherited, at:"), and when there is no
     * open stack, why ("" if nothing needs saying). */
    char open_label[120];
    char no_stack_note[256];
    /* The stack that places the finding (kind->placed_by). */
    const struct cw_vstack *placed;
    struct cw_vevent timeline[CW_VTIMELINE_MAX];
    int ntimeline;
};

struct cw_vgroup {
    const struct cw_kind_info *kind;
    const struct cw_vfinding *first; /* the group's findings: first[0..n) */
    int n;
    char title[160]; /* "37 sockets in CLOSE_WAIT without close()" */
};

struct cw_vrule {
    const char *kind; /* a kind's name, or "socket" */
    const char *pattern;
    int line, hits;
};

struct cw_view {
    double grace_s;
    unsigned spin_threshold;
    char generated_at[40]; /* ISO 8601 */
    struct cw_vprocess *procs;
    int nprocs;
    int quiet_procs; /* processes with a ring that used no socket */
    /* Unsuppressed findings in group order, then the suppressed ones. */
    struct cw_vfinding *findings;
    int nfindings, nshown;
    struct cw_vgroup *groups;
    int ngroups;
    int counts[CW_K_COUNT]; /* unsuppressed findings by kind */
    int errors;             /* of those, the ones that are errors */
    int suppressed;
    int young_close_wait;          /* in CLOSE_WAIT for less than the grace */
    const char *suppressions_path; /* NULL: no suppression file */
    struct cw_vrule *rules;
    int nrules;
    char **warnings;   /* symbolizer warnings, NULL-terminated */
    char summary[512]; /* "SUMMARY: closewatch: ..." */
};

#endif

/*
 * kinds.h - the finding kinds and everything each one means, in one table:
 * its name, where it ranks among groups, whether it is an error, the title
 * of a group of them, the advice, the one-line rule text for SARIF, and
 * which recorded stack places a finding of that kind in the code.
 */
#ifndef CW_KINDS_H
#define CW_KINDS_H

enum cw_kind {
    CW_K_CLOSE_WAIT,   /* peer closed, no close() for >= grace: still open, or closed
                          only by the process's teardown */
    CW_K_LATE_CLOSE,   /* closed, but only after > grace in CLOSE_WAIT */
    CW_K_EOF_SPIN,     /* read()==0 again and again on one socket */
    CW_K_DOUBLE_CLOSE, /* close() of an fd already closed */
    CW_K_EMFILE,       /* accept/socket failed: out of fds */
    CW_K_UNTRACKED,    /* in CLOSE_WAIT, never seen by the library */
    CW_K_OPEN_AT_EXIT, /* info: still open when the process ended */
    CW_K_COUNT,
};

/* The stack that says where in the code a finding is. */
enum cw_place { CW_PLACE_OPEN, CW_PLACE_CLOSE };

struct cw_kind_info {
    enum cw_kind kind;
    const char *name;                   /* as in JSON, SARIF rule ids and suppressions */
    int rank;                           /* groups are listed by rank, lowest first */
    int is_error;                       /* counts for the exit status */
    const char *title_one, *title_many; /* "%d" is the number of findings */
    const char *advice;                 /* what it means and what to do */
    const char *short_description;      /* SARIF's rule text */
    enum cw_place placed_by;
};

/* The row of kind k (an out-of-range k gets open_at_exit's). */
const struct cw_kind_info *cw_kind(enum cw_kind k);
const char *cw_kind_name(enum cw_kind k);
int cw_kind_is_error(enum cw_kind k);
/* The kind called name, or -1. */
int cw_kind_by_name(const char *name);
/* Findings that count as errors among counts[CW_K_COUNT]. */
int cw_error_count(const int *counts);

#endif

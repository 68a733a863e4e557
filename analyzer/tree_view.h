/*
 * tree_view.h - `closewatch run`'s kernel views of the processes in its
 * tree that no ring covers (static binaries): see tree_view.c.
 */
#ifndef CW_TREE_VIEW_H
#define CW_TREE_VIEW_H

#include <stdint.h>

#include "kernel.h"

struct cw_analysis;

struct cw_tree_proc {
    int pid;
    uint64_t start; /* /proc/PID/stat start time: pids are reused */
    char exe[256];
    struct cw_kview kv; /* the last view the kernel gave */
};

struct cw_tree {
    const char *ring_dir;
    struct cw_tree_proc *v;
    int n;
    const struct cw_kview **views; /* handed to the analysis by cw_tree_report */
};

/* Takes a view of each descendant of root (root too) that holds a TCP
 * socket: those without a ring, or everyone; keeps the last per process. */
void cw_tree_sample(struct cw_tree *t, int root, int everyone);
/* Hands the last views to the analysis (before its rings are analyzed)
 * and adds the processes no ring covers. t must outlive a's analysis. */
void cw_tree_report(struct cw_tree *t, struct cw_analysis *a);
void cw_tree_free(struct cw_tree *t);

#endif

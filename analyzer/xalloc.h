/*
 * xalloc.h - the analyzer's one out-of-memory policy: a report that
 * silently lacks findings is worse than none, so running out of memory ends
 * the run with a message and exit status 2 (as unreadable input does).
 */
#ifndef CW_XALLOC_H
#define CW_XALLOC_H

#include <stdio.h>
#include <stdlib.h>

static inline void *cw_oom_check(void *p)
{
    if (!p) {
        fputs("closewatch: out of memory\n", stderr);
        exit(2);
    }
    return p;
}

/* calloc/realloc that never return NULL (a zero size still gives memory). */
static inline void *cw_xcalloc(size_t n, size_t size)
{
    return cw_oom_check(calloc(n ? n : 1, size ? size : 1));
}

static inline void *cw_xrealloc(void *p, size_t size)
{
    return cw_oom_check(realloc(p, size ? size : 1));
}

#endif

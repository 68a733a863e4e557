/*
 * suppress.h - suppression files in the manner of LeakSanitizer: one rule a
 * line, `KIND:PATTERN`, where KIND is a finding kind or `socket` (any kind),
 * and PATTERN (with * and ? wildcards) is matched against the function,
 * module path and source file of every frame of the stack that opened the
 * socket and of the stack that saw its EOF (for double_close: the second
 * close), and against the program's path. `#` starts a comment.
 */
#ifndef CW_SUPPRESS_H
#define CW_SUPPRESS_H

#include <stddef.h>

#include "view.h"

struct cw_suppression {
    int kind; /* enum cw_kind, or -1 for any */
    char *pattern;
    int line;
    int hits;
};

struct cw_suppressions {
    char path[4096];
    struct cw_suppression *v;
    int n;
};

/* Returns 0, or -1 with "FILE:LINE: what was expected" in err. */
int cw_suppressions_load(struct cw_suppressions *s, const char *path, char *err, size_t errlen);
void cw_suppressions_free(struct cw_suppressions *s);
/* The first rule (index+1) that hides a finding of kind k whose placing
 * stacks (for a double close its close stack; else its open and EOF
 * stacks, and the request it was dialed for) are stacks[0..n), in program
 * exe; 0 if none. Counts the hit. */
int cw_suppressions_match(struct cw_suppressions *s, enum cw_kind k,
                          const struct cw_vstack *const *stacks, int n, const char *exe);

#endif

/*
 * lang_frames.h - hybrid stacks: a recorded stack's native pcs with, at
 * each evaluation-loop frame, the runtime frames it ran (CPython now; Java
 * and JavaScript frames arrive through the same ring records), each
 * resolved to {language, function, file, line}. Reads only the ring
 * (common/shm_reader.h); symbolizing the native pcs is the caller's job.
 */
#ifndef CW_LANG_FRAMES_H
#define CW_LANG_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#include "../common/shm_reader.h"

struct cw_hframe {
    unsigned lang; /* enum cw_lang: CW_LANG_NATIVE has pc; the others function/file/line */
    uint64_t pc;   /* native: the return address as recorded */
    /* native: 1 if pc lies in a runtime's evaluation loop (the runtime
     * frames just before it in the list are the ones it ran) */
    int eval;
    int line;           /* 0: unknown */
    char function[160]; /* "?" when the code record is missing */
    char file[256];
};

/* The frames of stack `id`, innermost first: native frames in recorded
 * order, each runtime frame just before the evaluation-loop frame that ran
 * it; runtime frames below the (depth-capped) native stack come last.
 * Returns the number written (at most max); *truncated (may be NULL) is
 * set when the runtime's stack was deeper than the ring kept. */
int cw_lang_hybrid(const struct cw_ring *r, uint32_t id, struct cw_hframe *out, int max,
                   int *truncated);

/* One line for a runtime the process has whose frames were not recorded,
 * or not all of them ("CPython 3.9.18: no frame walker for CPython 3.9
 * (...); native frames only", "Java 17.0.15: for 2 stacks recorded before
 * the JVM was found (...)"), written to buf; NULL if lang's runtime is absent or
 * all its frames were recorded. */
const char *cw_lang_unsupported(const struct cw_ring *r, unsigned lang, char *buf, size_t len);

/* The runtime's name and version as found ("CPython 3.11.7"), NULL if absent. */
const char *cw_lang_runtime_name(const struct cw_ring *r, unsigned lang, char *buf, size_t len);

/* "c", "python", "java", "javascript": the JSON `language` values. */
const char *cw_lang_name(unsigned lang);

/* The source line of position pos (enum cw_lang_frame.pos without flags) in
 * code record c whose line table is `table` (len bytes); 0 if unknown.
 * Exposed for tests. */
int cw_lang_line(const struct cw_code *c, const uint8_t *table, uint32_t len, uint32_t pos);

#endif

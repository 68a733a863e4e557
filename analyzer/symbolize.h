/*
 * symbolize.h - offline symbolization of recorded addresses with elfutils
 * libdw/libdwfl: from a runtime address and the module map of the process
 * that recorded it, to function, source file and line, inlined frames
 * included. Owns the cache of opened module files and resolved addresses,
 * and the warnings about files that changed or cannot be read.
 *
 * Not thread-safe: one symbolizer per thread.
 */
#ifndef CW_SYMBOLIZE_H
#define CW_SYMBOLIZE_H

#include "../common/shm_layout.h"

struct cw_sym_frame {
    uint64_t address;     /* the recorded runtime address */
    const char *module;   /* module path as recorded, or NULL if no module covers it */
    const char *function; /* demangled function name, or NULL */
    const char *file;     /* source file (as in DWARF, absolute if it can be made so), or NULL */
    int line;             /* 0 if unknown */
    int column;           /* 0 if unknown */
    int inlined;          /* 1: this frame was inlined into the next frame in the array */
};

struct cw_symbolizer;

struct cw_symbolizer *cw_symbolizer_new(void);
void cw_symbolizer_free(struct cw_symbolizer *s);

/*
 * Resolves one recorded address against the module list of the process that
 * recorded it.
 * is_return_address: 1 for all frames of a backtrace (look up address-1 so
 * the call line is found).
 * Fills up to max frames: the innermost inlined frames first, the containing
 * function last (a chain longer than max loses its outer frames).
 * Returns the number of frames (>= 1 always when max >= 1: an unresolvable
 * address gives one frame with just address/module set; 0 when max <= 0).
 * All strings are owned by the symbolizer and live until _free.
 * When several modules cover the address (a range reused after dlclose),
 * the last one in mods wins: the map is append-only, so it is the newest.
 */
int cw_symbolize(struct cw_symbolizer *s, const struct cw_module *mods, uint32_t nmods,
                 uint64_t address, int is_return_address, struct cw_sym_frame *out, int max);

/* 1 if path names closewatch's own preload library (basename starts with "libclosewatch"). */
int cw_sym_is_own_module(const char *path);

/*
 * Warnings gathered so far, one line each, each distinct warning once:
 * build-id mismatches, files that cannot be opened, files without debug
 * info. NULL-terminated array owned by s; the array (not the strings) is
 * valid until the next cw_symbolize call.
 */
const char *const *cw_symbolizer_warnings(struct cw_symbolizer *s);

#endif

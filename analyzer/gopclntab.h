/*
 * gopclntab.h - a Go binary's own pc-to-line table (.gopclntab, Go 1.18 and
 * later), which `-ldflags='-s -w'` keeps: the symbolizer's source of names
 * and lines for Go code that has no DWARF and no symbol table.
 */
#ifndef CW_GOPCLNTAB_H
#define CW_GOPCLNTAB_H

#include <stddef.h>
#include <stdint.h>

struct cw_gopcln;

/* Reads the table in the section's bytes (kept, not copied): NULL when it
 * is not one closewatch knows (another Go version, 32-bit, damaged). */
struct cw_gopcln *cw_gopcln_open(const void *data, size_t size);
void cw_gopcln_free(struct cw_gopcln *t);

/* The function covering link address pc, its file and line (NULL, 0 when
 * the table has none): 0, or -1 when no function covers pc. The strings
 * point into the section's bytes. */
int cw_gopcln_lookup(const struct cw_gopcln *t, uint64_t pc, const char **function,
                     const char **file, int *line);

#endif

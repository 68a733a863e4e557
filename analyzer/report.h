/*
 * report.h - the four report formats and what they share: resolving a
 * recorded stack to frames (closewatch's own frames removed), and plain
 * descriptions of findings.
 */
#ifndef CW_REPORT_H
#define CW_REPORT_H

#include <stdio.h>

#include "model.h"
#include "suppress.h"
#include "symbolize.h"

struct cw_report {
    struct cw_analysis *a;
    struct cw_symbolizer *sym;
    const struct cw_suppressions *sup; /* may be NULL */
};

#define CW_FRAMES_MAX 96 /* a stack's frames including inlined ones */

/* Frames of stack `id` recorded by p, outermost caller last. */
int cw_stack_frames(struct cw_symbolizer *sym, const struct cw_process *p, uint32_t id,
                    struct cw_sym_frame *out, int max);
/* The first frame with a source file: where a finding is placed. */
const struct cw_sym_frame *cw_first_source_frame(const struct cw_sym_frame *f, int n);

/* "37 sockets in CLOSE_WAIT", "1 double close", ... */
void cw_group_title(char *buf, size_t len, enum cw_kind kind, int n);
/* One sentence saying what a kind means and what to do about it. */
const char *cw_kind_advice(enum cw_kind kind);
/* What the eof field means for this finding, as a sentence; NULL for none. */
const char *cw_eof_sentence(const struct cw_finding *f);
/* "SUMMARY: closewatch: ..." without the newline. */
void cw_summary_line(char *buf, size_t len, const struct cw_analysis *a);

void cw_report_text(FILE *out, struct cw_report *r);
void cw_report_json(FILE *out, struct cw_report *r);
void cw_report_markdown(FILE *out, struct cw_report *r);
void cw_report_sarif(FILE *out, struct cw_report *r);

#endif

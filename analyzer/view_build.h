/*
 * view_build.h - making the resolved view (view.h) of an analysis: the one
 * place where findings meet the symbolizer and the suppressions.
 */
#ifndef CW_VIEW_BUILD_H
#define CW_VIEW_BUILD_H

#include "model.h"
#include "suppress.h"
#include "symbolize.h"
#include "view.h"

/*
 * Symbolizes every finding's stacks, applies the suppressions (sup may be
 * NULL; its hit counts start from zero) and groups, counts and describes
 * the findings. a, sym and sup must outlive the view. Returns NULL only
 * when out of memory.
 */
struct cw_view *cw_view_build(struct cw_analysis *a, struct cw_symbolizer *sym,
                              struct cw_suppressions *sup);
void cw_view_free(struct cw_view *v);

#endif

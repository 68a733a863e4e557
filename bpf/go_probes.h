/*
 * go_probes.h - the uprobes that link a Go program's net/http dial to the
 * request it was made for (closewatch.bpf.c, "the request behind a dial"):
 * which binaries get them, at which offsets.
 */
#ifndef CWB_GO_PROBES_H
#define CWB_GO_PROBES_H

struct closewatch_bpf;
struct cwb_go_probes;

struct cwb_go_probes *cwb_go_probes_new(struct closewatch_bpf *skel);
/* Attaches the probes to the Go program at path, once per file; a binary
 * that is not Go 1.17+ (register ABI) with net/http's dial in its symbol
 * table (stripped, C, an older Go) gets none. Returns 1 if attached (now
 * or before), 0 if not. Thread-safe. */
int cwb_go_probe(struct cwb_go_probes *gp, const char *path);
void cwb_go_probes_free(struct cwb_go_probes *gp);

#endif

/*
 * recorder.h - the bpf recorder as `closewatch run` uses it: load the
 * kernel programs, trace a process tree, write each traced process's ring,
 * stop.
 */
#ifndef CWB_RECORDER_H
#define CWB_RECORDER_H

#include <sys/types.h>

struct cwb_recorder;

struct cwb_config {
    const char *dir;     /* ring directory */
    const char *sampler; /* libclosewatch.so: run as each ring's sampler; NULL = none */
    unsigned sample_ms;  /* the sampler's period (CLOSEWATCH_SAMPLE_MS) */
    unsigned depth;      /* frames per stack */
    int skip_preloaded;  /* --recorder=both: leave processes with the preload alone */
};

/* Loads and attaches the programs: NULL with a reason in err when the
 * kernel refuses (no privilege, no BPF). */
struct cwb_recorder *cwb_start(const struct cwb_config *cfg, char *err, size_t errlen);
/* Traces pid and the processes it makes from now on. */
int cwb_trace(struct cwb_recorder *r, pid_t pid);
/* Starts tracing pid, which is already running: its ring is made now and
 * holds the sockets it has (without stacks). 0, or -1 with why in err. */
int cwb_attach(struct cwb_recorder *r, pid_t pid, char *err, size_t errlen);
/* Links the dials of the Go program at path to their requests (go_probes.h)
 * before it runs: 1 if it can. */
int cwb_probe(struct cwb_recorder *r, const char *path);
/* Drains what is left, stops, frees; returns the number of events lost. */
unsigned long long cwb_stop(struct cwb_recorder *r);

#endif

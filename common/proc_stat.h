/*
 * proc_stat.h - the one parser of /proc/PID/stat, for the preload (which
 * reads the file with raw system calls) and the analyzer alike: it parses a
 * buffer and never reads a file itself.
 */
#ifndef CW_PROC_STAT_H
#define CW_PROC_STAT_H

#include <stddef.h>
#include <stdint.h>

struct cw_pstat {
    char state;         /* field 3: R, S, Z, ... */
    int ppid;           /* field 4 */
    uint64_t starttime; /* field 22: clock ticks after boot; with the pid, a process's identity */
    /* Fields 26-28 and 48-51 (text, stack, arguments and environment
     * addresses) hashed: an exec changes them, the pid stays. image_known is
     * 0 when the line stops before field 51 (an old kernel) and image_masked
     * 1 when they read as zeros (and 1 in 26, 27): the kernel hides them
     * from others for a process that is not dumpable (one that changed uid). */
    uint64_t image;
    int image_known, image_masked;
};

/* Parses the n bytes of a /proc/PID/stat line (no NUL needed) into *out:
 * 0, or -1 if it is not one (fields 3, 4 and 22 are required). */
int cw_pstat_parse(const char *buf, size_t n, struct cw_pstat *out);

#endif

/*
 * ring_writer.h - the ring file of a process that the bpf recorder watches
 * from outside: made, filled and published by closewatch (not by the
 * process), in the layout of common/shm_layout.h, owned by the process's
 * user. One thread writes it (the recorder's); the preload's sampler,
 * started on it, writes kernel states beside, by the layout's protocol.
 */
#ifndef CWB_RING_WRITER_H
#define CWB_RING_WRITER_H

#include "../common/shm_layout.h"

#include <stddef.h>
#include <sys/types.h>

struct cwb_ring {
    struct cw_header *h;
    size_t size;
    pid_t pid;
    char path[CW_PATH_MAX + 64];
};

/* What the recorder knows of a socket when it records it. */
struct cwb_open {
    int fd, origin, family, type, protocol, src_fd;
    uint64_t inode, ts;
    uint32_t tid, stack;
    const struct cw_addr *local, *peer; /* NULL: unknown */
    uint32_t flags;                     /* enum cw_fd_flag */
};

struct cw_pstat;
/* pid's /proc/PID/stat, parsed (common/proc_stat.h): 0, or -1. */
int cwb_proc_stat(pid_t pid, struct cw_pstat *st);

/* Makes and publishes pid's ring in dir, owned by uid:gid, with stacks of
 * depth frames: 0, or -1 with errno. */
int cwb_ring_create(struct cwb_ring *r, const char *dir, pid_t pid, uid_t uid, gid_t gid,
                    uint32_t depth, uint32_t sample_ms);
void cwb_ring_release(struct cwb_ring *r);
/* Marks the ring's image replaced by an exec, at ts. */
void cwb_ring_mark_execed(struct cwb_ring *r, uint64_t ts);
/* Marks the process exited (not killed) at ts. */
void cwb_ring_mark_exited(struct cwb_ring *r, uint64_t ts);

/* Marks the ring as begun on a process already running (now), dating its
 * start from the kernel's start time. */
void cwb_ring_mark_attached(struct cwb_ring *r);
/* Marks the recording stopped at ts while the process still runs. */
void cwb_ring_mark_detached(struct cwb_ring *r, uint64_t ts);

/* Re-reads /proc/PID/maps into the module table (new objects only). */
void cwb_ring_modules(struct cwb_ring *r);
/* Interns n user frames: a stack id, 0 if none or the table is full. */
uint32_t cwb_ring_stack(struct cwb_ring *r, const uint64_t *pcs, int n);

void cwb_ring_event(struct cwb_ring *r, uint64_t ts, uint32_t tid, uint16_t type, int fd,
                    uint64_t sid, uint32_t stack, int64_t a0, int64_t a1, int64_t a2);
/* The fd's entry, NULL beyond the table. */
struct cw_fd_entry *cwb_ring_fd(struct cwb_ring *r, int fd);
/* Records a socket open at o->fd (closing as vanished one we thought open
 * there); returns its entry or NULL. */
struct cw_fd_entry *cwb_ring_open(struct cwb_ring *r, const struct cwb_open *o);
/* Closes the socket open at fd, if any, at ts with how (enum cw_close_how);
 * stack is kept only for a late close. Returns 1 if one was open. */
int cwb_ring_close(struct cwb_ring *r, int fd, uint64_t ts, uint32_t tid, int how, uint32_t stack,
                   uint32_t eof_count, int other);

#endif

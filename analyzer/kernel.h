/*
 * kernel.h - the kernel's view of a live process's sockets: which fds are
 * sockets (/proc/PID/fd) and, for TCP, their state, addresses and queues
 * (sock_diag). Used by live reports, `watch`, and processes without a ring.
 */
#ifndef CW_KERNEL_H
#define CW_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#include "../common/shm_layout.h"

struct cw_ksock {
    int fd;
    uint64_t inode;
    int is_tcp; /* found by sock_diag: the fields below are valid */
    int state;  /* enum cw_tcp_state */
    struct cw_addr local, peer;
    uint32_t recv_q, send_q;
    /* In CLOSE_WAIT: when the peer's FIN came as the kernel dates it
     * (CLOCK_MONOTONIC, an upper bound: see cw_sock_diag_dump_aged); 0 if
     * the kernel did not say. */
    uint64_t fin_mono_ns;
};

struct cw_kview {
    int pid;
    struct cw_ksock *socks; /* sorted by inode */
    int n;
    uint64_t taken_mono_ns;  /* when the kernel was asked */
    uint64_t proc_starttime; /* the process's start time, when the taker knew it */
};

/* Returns 0, or -1 with a message: no such process, or not permitted. */
int cw_kernel_view(int pid, struct cw_kview *out, char *err, size_t errlen);
void cw_kview_free(struct cw_kview *v);
const struct cw_ksock *cw_kview_find(const struct cw_kview *v, uint64_t inode);

/* 1 with pid's state letter, parent and start time (clock ticks after
 * boot) from /proc/PID/stat; 0 if there is no such process. */
int cw_proc_stat(int pid, char *state, int *ppid, uint64_t *starttime);
/* pid's executable (/proc/PID/exe) into buf; "" when unreadable. */
void cw_proc_exe(int pid, char *buf, size_t len);
/* How many fds pid holds and its soft RLIMIT_NOFILE ("Max open files");
 * -1 for what cannot be read ("unlimited" is -1 too). */
void cw_proc_fd_usage(int pid, int *open, long *limit);
/* 1 if pid exists; its start time (clock ticks after boot) in *starttime. */
int cw_pid_alive(int pid, uint64_t *starttime);
/* CLOCK_MONOTONIC now, in ns. */
uint64_t cw_mono_now(void);

#endif

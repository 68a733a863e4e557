/*
 * events.h - what the kernel side of the bpf recorder (closewatch.bpf.c)
 * hands to its user side (recorder.c) through the BPF ring buffer: one
 * fixed-size record per socket lifecycle call of a traced process, with the
 * calling thread's user stack. Included by both sides; kernel types only.
 */
#ifndef CWB_EVENTS_H
#define CWB_EVENTS_H

#define CWB_DEPTH 32 /* user frames per stack */
/* common/shm_layout.h's CW_PROMPT_CLOSE_NS (recorder.c checks they agree):
 * a close this soon after the peer's FIN needs no stack. */
#define CWB_PROMPT_CLOSE_NS 10000000ull

enum cwb_kind {
    CWB_SOCKET = 1,  /* fd = new socket; a0 = family, a1 = type, a2 = protocol */
    CWB_SOCKETPAIR,  /* fd, a0 = the two fds; a1 = family, a2 = type */
    CWB_ACCEPT,      /* fd = new socket; a0 = listening fd */
    CWB_CONNECT,     /* fd; a0 = return value (-errno) */
    CWB_LISTEN,      /* fd; a0 = return value */
    CWB_SHUTDOWN,    /* fd; a0 = how, a1 = return value */
    CWB_CLOSE,       /* fd; a0 = enum cw_close_how, a1 = eof count, a2 = the fd dup2'ed over it */
    CWB_CLOSE_RANGE, /* a0 = first, a1 = last */
    CWB_DUP,         /* fd = new fd; a0 = old fd */
    CWB_EOF,         /* fd; a0 = read()==0 count so far (sent at 1, 2, 4, 8, ...) */
    CWB_EXEC,        /* the process runs a new image */
    CWB_EXIT,        /* the process is gone (its last thread exited); a0 = its wait status */
    CWB_FORK,        /* a0 = the child's pid, a new process of the traced tree */
    CWB_REQUEST,     /* fd: the socket just made; stack: the user's stack of the request it
                        was dialed for (go_probes.c), sent right after its CWB_SOCKET */
};

struct cwb_sockaddr {
    unsigned short family; /* AF_INET, AF_INET6, 0 = unknown */
    unsigned short port;   /* host order */
    unsigned char addr[16];
};

struct cwb_event {
    unsigned long long ts; /* bpf_ktime_get_ns: CLOCK_MONOTONIC */
    unsigned int tgid, tid;
    unsigned short kind;   /* enum cwb_kind */
    unsigned short nstack; /* frames in stack[] */
    int fd;
    long long a0, a1, a2;
    unsigned long long inode; /* the socket's, 0 = unknown */
    unsigned short sk_family, sk_type;
    unsigned int pad;
    struct cwb_sockaddr local, peer;
    unsigned long long stack[CWB_DEPTH];
};

#endif

// SPDX-License-Identifier: GPL-2.0
/*
 * closewatch.bpf.c - the kernel side of the bpf recorder: the socket
 * lifecycle calls of the traced processes, seen on the system call
 * tracepoints, whatever made them (Go's own system calls, a static binary,
 * syscall()), each with the caller's user stack, handed to recorder.c
 * through a ring buffer.
 *
 * Which processes: the tgids in `traced`, filled by user space with the
 * program it starts and followed here through fork (a new process of a
 * traced one is traced) and exit; exec keeps the tgid. Every other process
 * pays one hash lookup on the calls below and nothing more.
 *
 * What is a socket: `socks`, keyed (tgid, fd), filled where a socket is made
 * (socket, socketpair, accept, dup of a socket) and emptied at its close, so
 * a read returning 0 is looked at only on a known stream socket.
 *
 * The syscall tracepoint contexts are written out here (their layout is the
 * kernel's ABI for syscall tracepoints); vmlinux.h is used for what CO-RE
 * relocates: the task, its fd table, the file, the socket.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#include "events.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET         2
#define AF_INET6        10
#define SOCK_STREAM     1
#define F_DUPFD         0
#define F_DUPFD_CLOEXEC 1030
#define CLOSE_CLOSE     1 /* enum cw_close_how */
#define CLOSE_DUP2      2
#define CLOSE_RANGE_    3

struct sys_enter_ctx {
    unsigned long long common;
    long nr;
    unsigned long args[6];
};

struct sys_exit_ctx {
    unsigned long long common;
    long nr;
    long ret;
};

struct sock_key {
    __u32 tgid;
    __s32 fd;
};

struct sock_val {
    __u16 type;
    __u16 pad;
    __u32 eofs; /* read()==0 so far */
};

/* A call between its entry and its exit, by thread. */
struct pending {
    __u32 kind;
    __s32 fd;
    unsigned long a1, a2;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, __u32);
    __type(value, __u8);
} traced SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 262144);
    __type(key, struct sock_key);
    __type(value, struct sock_val);
} socks SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16384);
    __type(key, __u32);
    __type(value, struct pending);
} pend SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 16 << 20);
} events SEC(".maps");

/* [0]: events not sent (ring buffer full), [1]: sockets not tracked (map full). */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 2);
    __type(key, __u32);
    __type(value, __u64);
} lost SEC(".maps");

static __always_inline void count_lost(__u32 what)
{
    __u64 *n = bpf_map_lookup_elem(&lost, &what);
    if (n)
        __sync_fetch_and_add(n, 1);
}

static __always_inline int is_traced(__u32 tgid)
{
    return bpf_map_lookup_elem(&traced, &tgid) != 0;
}

static __always_inline struct file *fd_file(int fd)
{
    struct task_struct *t = (struct task_struct *)bpf_get_current_task();
    struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
    if (!fdt || fd < 0 || (unsigned)fd >= BPF_CORE_READ(fdt, max_fds))
        return 0;
    struct file **fds = BPF_CORE_READ(fdt, fd);
    struct file *f = 0;
    bpf_probe_read_kernel(&f, sizeof f, &fds[fd]);
    return f;
}

static __always_inline void fill_sockaddrs(struct cwb_event *ev, int fd)
{
    struct file *f = fd_file(fd);
    if (!f)
        return;
    ev->inode = BPF_CORE_READ(f, f_inode, i_ino);
    struct socket *sock = BPF_CORE_READ(f, private_data);
    if (!sock)
        return;
    ev->sk_type = BPF_CORE_READ(sock, type);
    struct sock *sk = BPF_CORE_READ(sock, sk);
    if (!sk)
        return;
    __u16 fam = BPF_CORE_READ(sk, __sk_common.skc_family);
    ev->sk_family = fam;
    if (fam == AF_INET) {
        ev->local.family = ev->peer.family = fam;
        __u32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
        __u32 p = BPF_CORE_READ(sk, __sk_common.skc_daddr);
        __builtin_memcpy(ev->local.addr, &l, 4);
        __builtin_memcpy(ev->peer.addr, &p, 4);
    } else if (fam == AF_INET6) {
        ev->local.family = ev->peer.family = fam;
        BPF_CORE_READ_INTO(&ev->local.addr, sk, __sk_common.skc_v6_rcv_saddr);
        BPF_CORE_READ_INTO(&ev->peer.addr, sk, __sk_common.skc_v6_daddr);
    } else {
        return;
    }
    ev->local.port = BPF_CORE_READ(sk, __sk_common.skc_num);
    ev->peer.port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
}

/* A zeroed event of kind for the calling thread, with its user stack;
 * NULL (counted) when the ring buffer is full. */
static __always_inline struct cwb_event *event_start(void *ctx, __u16 kind, int fd, int stack)
{
    struct cwb_event *ev = bpf_ringbuf_reserve(&events, sizeof *ev, 0);
    if (!ev) {
        count_lost(0);
        return 0;
    }
    __u64 id = bpf_get_current_pid_tgid();
    __builtin_memset(ev, 0, sizeof *ev);
    ev->ts = bpf_ktime_get_ns();
    ev->tgid = id >> 32;
    ev->tid = (__u32)id;
    ev->kind = kind;
    ev->fd = fd;
    if (stack) {
        long n = bpf_get_stack(ctx, ev->stack, sizeof ev->stack, BPF_F_USER_STACK);
        ev->nstack = n > 0 ? (__u64)n / 8 : 0;
    }
    return ev;
}

static __always_inline void sock_add(__u32 tgid, int fd, __u16 type)
{
    struct sock_key k = {tgid, fd};
    struct sock_val v = {.type = type};
    if (bpf_map_update_elem(&socks, &k, &v, BPF_ANY))
        count_lost(1);
}

static __always_inline struct sock_val *sock_get(__u32 tgid, int fd)
{
    struct sock_key k = {tgid, fd};
    return bpf_map_lookup_elem(&socks, &k);
}

/* Forgets fd if it is a socket and says so in a close event. */
static __always_inline void sock_close(void *ctx, __u32 tgid, int fd, int how, int other)
{
    struct sock_key k = {tgid, fd};
    struct sock_val *v = bpf_map_lookup_elem(&socks, &k);
    if (!v)
        return;
    __u32 eofs = v->eofs;
    bpf_map_delete_elem(&socks, &k);
    struct cwb_event *ev = event_start(ctx, CWB_CLOSE, fd, 1);
    if (!ev)
        return;
    ev->a0 = how;
    ev->a1 = eofs;
    ev->a2 = other;
    bpf_ringbuf_submit(ev, 0);
}

/* ---- entries: remember the arguments the exit needs ---------------------- */

static __always_inline int remember(__u32 kind, int fd, unsigned long a1, unsigned long a2)
{
    __u64 id = bpf_get_current_pid_tgid();
    if (!is_traced(id >> 32))
        return 0;
    __u32 tid = (__u32)id;
    struct pending p = {kind, fd, a1, a2};
    bpf_map_update_elem(&pend, &tid, &p, BPF_ANY);
    return 0;
}

/* A read-family call on a known stream socket asking for something. */
static __always_inline int remember_read(int fd, unsigned long want)
{
    __u64 id = bpf_get_current_pid_tgid();
    if (!want || !is_traced(id >> 32))
        return 0;
    struct sock_val *v = sock_get(id >> 32, fd);
    if (!v || v->type != SOCK_STREAM)
        return 0;
    __u32 tid = (__u32)id;
    struct pending p = {CWB_EOF, fd, 0, 0};
    bpf_map_update_elem(&pend, &tid, &p, BPF_ANY);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_socket")
int enter_socket(struct sys_enter_ctx *c)
{
    return remember(CWB_SOCKET, -1, c->args[0], c->args[1]);
}

SEC("tracepoint/syscalls/sys_enter_socketpair")
int enter_socketpair(struct sys_enter_ctx *c)
{
    return remember(CWB_SOCKETPAIR, -1, c->args[0] | c->args[1] << 32, c->args[3]);
}

SEC("tracepoint/syscalls/sys_enter_accept")
int enter_accept(struct sys_enter_ctx *c)
{
    return remember(CWB_ACCEPT, c->args[0], 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_accept4")
int enter_accept4(struct sys_enter_ctx *c)
{
    return remember(CWB_ACCEPT, c->args[0], 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_connect")
int enter_connect(struct sys_enter_ctx *c)
{
    return remember(CWB_CONNECT, c->args[0], 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_listen")
int enter_listen(struct sys_enter_ctx *c)
{
    return remember(CWB_LISTEN, c->args[0], 0, 0);
}

SEC("tracepoint/syscalls/sys_enter_shutdown")
int enter_shutdown(struct sys_enter_ctx *c)
{
    return remember(CWB_SHUTDOWN, c->args[0], c->args[1], 0);
}

SEC("tracepoint/syscalls/sys_enter_dup")
int enter_dup(struct sys_enter_ctx *c)
{
    return remember(CWB_DUP, c->args[0], (unsigned long)-1, 0);
}

SEC("tracepoint/syscalls/sys_enter_dup2")
int enter_dup2(struct sys_enter_ctx *c)
{
    return remember(CWB_DUP, c->args[0], c->args[1], 0);
}

SEC("tracepoint/syscalls/sys_enter_dup3")
int enter_dup3(struct sys_enter_ctx *c)
{
    return remember(CWB_DUP, c->args[0], c->args[1], 0);
}

SEC("tracepoint/syscalls/sys_enter_fcntl")
int enter_fcntl(struct sys_enter_ctx *c)
{
    if (c->args[1] != F_DUPFD && c->args[1] != F_DUPFD_CLOEXEC)
        return 0;
    return remember(CWB_DUP, c->args[0], (unsigned long)-1, 0);
}

SEC("tracepoint/syscalls/sys_enter_close_range")
int enter_close_range(struct sys_enter_ctx *c)
{
    return remember(CWB_CLOSE_RANGE, -1, c->args[0], c->args[1]);
}

/* close: the fd is gone whatever the result (Linux closes even on EINTR);
 * an fd that was never open is not in socks. */
SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct sys_enter_ctx *c)
{
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (is_traced(tgid))
        sock_close(c, tgid, (int)c->args[0], CLOSE_CLOSE, -1);
    return 0;
}

SEC("tracepoint/syscalls/sys_enter_read")
int enter_read(struct sys_enter_ctx *c)
{
    return remember_read(c->args[0], c->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_readv")
int enter_readv(struct sys_enter_ctx *c)
{
    return remember_read(c->args[0], c->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_recvfrom")
int enter_recvfrom(struct sys_enter_ctx *c)
{
    return remember_read(c->args[0], c->args[2]);
}

SEC("tracepoint/syscalls/sys_enter_recvmsg")
int enter_recvmsg(struct sys_enter_ctx *c)
{
    return remember_read(c->args[0], 1);
}

/* ---- exits ---------------------------------------------------------------- */

static __always_inline int on_exit(struct sys_exit_ctx *c)
{
    __u64 id = bpf_get_current_pid_tgid();
    __u32 tid = (__u32)id, tgid = id >> 32;
    struct pending *pp = bpf_map_lookup_elem(&pend, &tid);
    if (!pp)
        return 0;
    struct pending p = *pp;
    bpf_map_delete_elem(&pend, &tid);
    long ret = c->ret;
    struct cwb_event *ev;

    switch (p.kind) {
    case CWB_EOF: {
        if (ret != 0)
            return 0;
        struct sock_val *v = sock_get(tgid, p.fd);
        if (!v)
            return 0;
        __u32 n = __sync_add_and_fetch(&v->eofs, 1);
        if (n & (n - 1)) /* the first, then at powers of two */
            return 0;
        ev = event_start(c, CWB_EOF, p.fd, n == 1);
        if (!ev)
            return 0;
        ev->a0 = n;
        break;
    }
    case CWB_SOCKET:
        if (ret < 0)
            return 0;
        sock_add(tgid, ret, p.a2 & 0xf);
        ev = event_start(c, CWB_SOCKET, ret, 1);
        if (!ev)
            return 0;
        ev->a0 = p.a1;
        ev->a1 = p.a2 & 0xf;
        fill_sockaddrs(ev, ret);
        break;
    case CWB_SOCKETPAIR: {
        int sv[2] = {-1, -1};
        if (ret < 0 || bpf_probe_read_user(sv, sizeof sv, (void *)p.a2))
            return 0;
        __u16 type = (p.a1 >> 32) & 0xf;
        sock_add(tgid, sv[0], type);
        sock_add(tgid, sv[1], type);
        ev = event_start(c, CWB_SOCKETPAIR, sv[0], 1);
        if (!ev)
            return 0;
        ev->a0 = sv[1];
        ev->a1 = (__u32)p.a1;
        ev->a2 = type;
        fill_sockaddrs(ev, sv[0]);
        break;
    }
    case CWB_ACCEPT:
        if (ret < 0)
            return 0;
        ev = event_start(c, CWB_ACCEPT, ret, 1);
        if (!ev) {
            sock_add(tgid, ret, SOCK_STREAM);
            return 0;
        }
        ev->a0 = p.fd;
        fill_sockaddrs(ev, ret);
        sock_add(tgid, ret, ev->sk_type ? ev->sk_type : SOCK_STREAM);
        break;
    case CWB_CONNECT:
    case CWB_LISTEN:
    case CWB_SHUTDOWN:
        if (!sock_get(tgid, p.fd))
            return 0;
        ev = event_start(c, p.kind, p.fd, p.kind != CWB_LISTEN);
        if (!ev)
            return 0;
        ev->a0 = p.kind == CWB_SHUTDOWN ? (long)p.a1 : ret;
        ev->a1 = ret;
        fill_sockaddrs(ev, p.fd);
        break;
    case CWB_DUP: {
        int newfd = (int)p.a1;
        if (ret < 0 || ret == p.fd)
            return 0;
        if (newfd >= 0) /* dup2/dup3 over an open socket closes it */
            sock_close(c, tgid, newfd, CLOSE_DUP2, p.fd);
        struct sock_val *v = sock_get(tgid, p.fd);
        if (!v)
            return 0;
        sock_add(tgid, ret, v->type);
        ev = event_start(c, CWB_DUP, ret, 1);
        if (!ev)
            return 0;
        ev->a0 = p.fd;
        break;
    }
    case CWB_CLOSE_RANGE:
        if (ret < 0)
            return 0;
        /* User space forgets the range's sockets in socks: it knows them. */
        ev = event_start(c, CWB_CLOSE_RANGE, -1, 1);
        if (!ev)
            return 0;
        ev->a0 = p.a1;
        ev->a1 = p.a2;
        break;
    default: return 0;
    }
    bpf_ringbuf_submit(ev, 0);
    return 0;
}

#define EXIT_PROG(name)                                                                            \
    SEC("tracepoint/syscalls/sys_exit_" #name)                                                     \
    int exit_##name(struct sys_exit_ctx *c)                                                        \
    {                                                                                              \
        return on_exit(c);                                                                         \
    }

EXIT_PROG(socket)
EXIT_PROG(socketpair)
EXIT_PROG(accept)
EXIT_PROG(accept4)
EXIT_PROG(connect)
EXIT_PROG(listen)
EXIT_PROG(shutdown)
EXIT_PROG(dup)
EXIT_PROG(dup2)
EXIT_PROG(dup3)
EXIT_PROG(fcntl)
EXIT_PROG(close_range)
EXIT_PROG(read)
EXIT_PROG(readv)
EXIT_PROG(recvfrom)
EXIT_PROG(recvmsg)

/* ---- the process tree ------------------------------------------------------ */

/* raw tracepoints: their arguments are the kernel's task pointers, which tell
 * a new process from a new thread (a thread needs nothing: its tgid is traced). */
SEC("raw_tracepoint/sched_process_fork")
int on_fork(struct bpf_raw_tracepoint_args *ctx)
{
    struct task_struct *parent = (struct task_struct *)ctx->args[0];
    struct task_struct *child = (struct task_struct *)ctx->args[1];
    __u32 ptgid = BPF_CORE_READ(parent, tgid);
    __u32 ctgid = BPF_CORE_READ(child, tgid);
    if (ctgid == ptgid || !is_traced(ptgid))
        return 0;
    __u8 one = 1;
    bpf_map_update_elem(&traced, &ctgid, &one, BPF_ANY);
    struct cwb_event *ev = event_start(ctx, CWB_FORK, -1, 0);
    if (!ev)
        return 0;
    ev->a0 = ctgid;
    bpf_ringbuf_submit(ev, 0);
    return 0;
}

SEC("raw_tracepoint/sched_process_exec")
int on_exec(struct bpf_raw_tracepoint_args *ctx)
{
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (!is_traced(tgid))
        return 0;
    struct cwb_event *ev = event_start(ctx, CWB_EXEC, -1, 0);
    if (ev)
        bpf_ringbuf_submit(ev, 0);
    return 0;
}

/* The last thread of a process: its tgid leaves the tree, its sockets the map
 * (user space deletes them: it knows which). */
SEC("raw_tracepoint/sched_process_exit")
int on_task_exit(struct bpf_raw_tracepoint_args *ctx)
{
    struct task_struct *t = (struct task_struct *)ctx->args[0];
    __u32 tgid = BPF_CORE_READ(t, tgid);
    __u32 tid = BPF_CORE_READ(t, pid);
    bpf_map_delete_elem(&pend, &tid);
    if (!is_traced(tgid) || BPF_CORE_READ(t, signal, live.counter) != 0)
        return 0;
    bpf_map_delete_elem(&traced, &tgid);
    struct cwb_event *ev = event_start(ctx, CWB_EXIT, -1, 0);
    if (!ev)
        return 0;
    ev->tgid = tgid;
    bpf_ringbuf_submit(ev, 0);
    return 0;
}

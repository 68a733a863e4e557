// SPDX-License-Identifier: GPL-2.0
/*
 * closewatch.bpf.c - the kernel side of the bpf recorder: the socket
 * lifecycle calls of the traced processes, seen at system call entry and
 * exit, whatever made them (Go's own system calls, a static binary,
 * syscall()), each with the caller's user stack, handed to recorder.c
 * through a ring buffer.
 *
 * Which processes: the tgids in `traced`, filled by user space with the
 * program it starts and followed here through fork (a new process of a
 * traced one is traced) and exit; exec keeps the tgid. Every other process
 * pays a test of the call number at each entry and exit, and one hash lookup
 * on close, on a read returning 0 and on the socket calls, nothing more.
 *
 * What is a socket: `socks`, keyed (tgid, fd), filled where a socket is made
 * (socket, socketpair, accept, dup of a socket) and emptied at its close, so
 * a read returning 0 is looked at only on a known stream socket.
 *
 * Which calls: one program on the raw sys_enter and one on sys_exit
 * (tp_btf), which switch on the call number; vmlinux.h gives the types CO-RE
 * relocates: the registers, the task, its fd table, the file, the socket.
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

struct sock_key {
    __u32 tgid;
    __s32 fd;
};

struct sock_val {
    __u16 type;
    __u16 pad;
    __u32 eofs; /* read()==0 so far */
};

/* traced values: whether the process has sent a record since it was traced
 * or exec'ed (user space traces with TRACED_NEW). */
#define TRACED_NEW  1
#define TRACED_SEEN 2

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

#define EVENTS_BYTES (16 << 20)
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, EVENTS_BYTES);
} events SEC(".maps");

/*
 * Committing a record wakes the drain by default (an irq_work: a self-IPI,
 * then a wakeup of the drain thread on the other CPU), once per record while
 * the drain keeps up. On this 2-CPU VM that was the recorder's main cost to
 * the traced server: about 3 wakeups per connection. The drain polls every
 * CWB_DRAIN_MS instead (recorder.c), and is woken early only for what it
 * must see while the process lives (event_submit) and once a sixteenth of
 * the buffer waits (about 2800 records, which a churning server makes in a
 * tenth of a second): nothing is dropped to save the wakeup.
 */
#define WAKE_AT (EVENTS_BYTES / 16)

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

#define TS_COMPAT 0x0002 /* arch/x86/include/asm/thread_info.h */

/* A call of a traced process with the 64-bit numbers and registers below: a
 * 32-bit task's calls (other numbers, other registers) are not looked at. */
static __always_inline int traced_call(__u32 tgid)
{
    if (!is_traced(tgid))
        return 0;
    struct task_struct *t = bpf_get_current_task_btf();
    return !(t->thread_info.status & TS_COMPAT);
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

/*
 * Commits ev, waking the drain at once when it must read /proc/PID while the
 * process still lives: a process's first record since it was traced or
 * exec'ed (its ring is made then, from /proc/PID: owner, exe, module map),
 * its fork, exec and exit (urgent), and when the buffer fills. Everything
 * else waits for the drain's next round.
 */
static __always_inline void event_submit(struct cwb_event *ev, int urgent)
{
    __u32 tgid = ev->tgid;
    __u8 *t = bpf_map_lookup_elem(&traced, &tgid);
    if (t && *t == TRACED_NEW) {
        *t = TRACED_SEEN;
        urgent = 1;
    }
    if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= WAKE_AT)
        urgent = 1;
    bpf_ringbuf_submit(ev, urgent ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
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

#define IPPROTO_TCP     6
#define TCP_ESTABLISHED 1 /* ... TCP_FIN_WAIT2 5: include/net/tcp_states.h */
#define TCP_FIN_WAIT2   5
#define TCP_CLOSE_WAIT  8
#define TCP_LISTEN      10

extern int CONFIG_HZ __kconfig __weak; /* 0 if the kernel does not say */

/*
 * Whether a close() of the open fd may come late: user space keeps a close's
 * stack only then (later than CWB_PROMPT_CLOSE_NS after the peer's FIN, as
 * the preload), and the stack walk is the dearest part of a record (about
 * 2.5 us in a Go server's close here). A TCP close that cannot be late skips
 * it: the peer's FIN never came (ESTABLISHED, SYN_*, FIN_WAIT*, LISTEN), or
 * the socket is in CLOSE_WAIT and had data from the peer (or was made) less
 * than the prompt time ago — the FIN comes after the last data, so any date
 * of it (an EOF, the sampler's CLOSE_WAIT, tcp_info's last ACK) is later
 * still. Two jiffies of margin for the jiffy clocks. Anything else keeps it.
 */
static __always_inline int close_may_be_late(int fd)
{
    struct file *f = fd_file(fd);
    struct socket *sock = f ? BPF_CORE_READ(f, private_data) : 0;
    struct sock *sk = sock ? BPF_CORE_READ(sock, sk) : 0;
    if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
        return 1;
    __u16 fam = BPF_CORE_READ(sk, __sk_common.skc_family);
    if (fam != AF_INET && fam != AF_INET6)
        return 1;
    __u8 state = BPF_CORE_READ(sk, __sk_common.skc_state);
    if ((state >= TCP_ESTABLISHED && state <= TCP_FIN_WAIT2) || state == TCP_LISTEN)
        return 0;
    if (state != TCP_CLOSE_WAIT || CONFIG_HZ <= 0)
        return 1;
    __u32 last = BPF_CORE_READ((struct inet_connection_sock *)sk, icsk_ack.lrcvtime);
    __u32 age = (__u32)bpf_jiffies64() - last;
    return (__u64)(age + 2) * (1000000000ull / CONFIG_HZ) > CWB_PROMPT_CLOSE_NS;
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
    /* After a dup2 over it, fd holds the new file: no state to look at. */
    int stack = how != CLOSE_CLOSE || close_may_be_late(fd);
    struct cwb_event *ev = event_start(ctx, CWB_CLOSE, fd, stack);
    if (!ev)
        return;
    ev->a0 = how;
    ev->a1 = eofs;
    ev->a2 = other;
    event_submit(ev, 0);
}

/* x86_64 system call numbers (asm/unistd_64.h): the raw sys_enter/sys_exit
 * tracepoints see every call, the number tells them apart. */
#define NR_read        0
#define NR_close       3
#define NR_readv       19
#define NR_dup         32
#define NR_dup2        33
#define NR_socket      41
#define NR_connect     42
#define NR_accept      43
#define NR_recvfrom    45
#define NR_recvmsg     47
#define NR_shutdown    48
#define NR_listen      50
#define NR_socketpair  53
#define NR_fcntl       72
#define NR_splice      275
#define NR_accept4     288
#define NR_dup3        292
#define NR_close_range 436

/* ---- the request behind a dial (Go's net/http) ------------------------------ */

/*
 * net/http dials in a goroutine of its own, whose stack holds no frame of
 * the program: (*Transport).getConn calls queueForDial(w) in the request's
 * goroutine, which starts `go dialConnFor(w)`. Entry-only uprobes (a
 * uretprobe rewrites the return address, which Go's moving stacks and
 * traceback cannot survive), attached by go_probes.c, carry the request's
 * stack from w to the dial goroutine, and the socket that goroutine makes
 * gets it. Go's register ABI: AX, BX are the first two arguments (t, w),
 * R14 holds the running goroutine (g), at the probes and at the system
 * call alike.
 */
struct go_key {
    __u32 tgid;
    __u32 pad;
    __u64 ptr; /* a *wantConn, or a g */
};

struct go_stack {
    __u64 n;
    __u64 pcs[CWB_DEPTH];
};

/* LRU: a request cancelled before its dial, a goroutine gone before
 * tryDeliver, leave entries nothing deletes. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, struct go_key);
    __type(value, struct go_stack);
} go_wants SEC(".maps"); /* (tgid, w) -> the requesting goroutine's stack */

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, struct go_key);
    __type(value, struct go_stack);
} go_dialers SEC(".maps"); /* (tgid, g of a dial goroutine) -> the same */

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct go_stack);
} go_scratch SEC(".maps");

/* (*Transport).queueForDial(t, w), in the request's goroutine. At a
 * function's entry BP is still its caller's: a frame-pointer walk gives the
 * probed function's entry, then skips its caller. So the first frame is
 * dropped and the return address on top of the stack (into getConn) put in
 * its place; roundTrip and the program's frames follow. */
SEC("uprobe")
int go_queue_for_dial(struct pt_regs *ctx)
{
    __u32 tgid = bpf_get_current_pid_tgid() >> 32, zero = 0;
    if (!is_traced(tgid))
        return 0;
    struct go_stack *s = bpf_map_lookup_elem(&go_scratch, &zero);
    if (!s)
        return 0;
    long n = bpf_get_stack(ctx, &s->pcs[1], sizeof s->pcs - 8, BPF_F_USER_STACK | 1);
    if (n <= 0 || bpf_probe_read_user(&s->pcs[0], 8, (void *)ctx->sp))
        return 0;
    s->n = (__u64)n / 8 + 1;
    struct go_key k = {tgid, 0, ctx->bx};
    bpf_map_update_elem(&go_wants, &k, s, BPF_ANY);
    return 0;
}

/* (*Transport).dialConnFor(t, w), first thing in the dial goroutine. */
SEC("uprobe")
int go_dial_conn_for(struct pt_regs *ctx)
{
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    struct go_key w = {tgid, 0, ctx->bx};
    struct go_stack *s = bpf_map_lookup_elem(&go_wants, &w);
    if (!s)
        return 0;
    struct go_key g = {tgid, 0, ctx->r14};
    bpf_map_update_elem(&go_dialers, &g, s, BPF_ANY);
    bpf_map_delete_elem(&go_wants, &w);
    return 0;
}

/* (*wantConn).tryDeliver, which the dial goroutine calls once dialed: the
 * goroutine (its g is reused for others) dials no more. */
SEC("uprobe")
int go_try_deliver(struct pt_regs *ctx)
{
    struct go_key g = {bpf_get_current_pid_tgid() >> 32, 0, ctx->r14};
    bpf_map_delete_elem(&go_dialers, &g);
    return 0;
}

/* A socket made by a dial goroutine: the request's stack, as its own event. */
static __always_inline void send_request(void *ctx, __u32 tgid, int fd, __u64 g)
{
    struct go_key k = {tgid, 0, g};
    struct go_stack *s = bpf_map_lookup_elem(&go_dialers, &k);
    if (!s)
        return;
    struct cwb_event *ev = event_start(ctx, CWB_REQUEST, fd, 0);
    if (!ev)
        return;
    __builtin_memcpy(ev->stack, s->pcs, sizeof ev->stack);
    ev->nstack = s->n < CWB_DEPTH ? s->n : CWB_DEPTH;
    event_submit(ev, 0);
}

/*
 * One program on the raw sys_enter tracepoint and one on sys_exit (tp_btf),
 * not one per call on the syscalls/ tracepoints: those go through
 * perf_syscall_enter/exit, which build a perf record on the stack for every
 * read of every process before the program's first check. These run for
 * every system call on the machine, so each leaves at its first test for
 * all but the calls above, and a read of an untraced process that returned
 * data costs two compares and no map lookup.
 *
 * Everything but close is handled at exit, where the call's arguments are
 * still in the user registers (the kernel changes only ax before the
 * sys_exit tracepoint; signal restarts come after it). close is taken at
 * entry: once the fd is free another thread may get the same number from a
 * new socket before this call's exit runs.
 */
SEC("tp_btf/sys_enter")
int BPF_PROG(on_sys_enter, struct pt_regs *regs, long nr)
{
    if (nr != NR_close)
        return 0;
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    /* The fd is gone whatever the result (Linux closes even on EINTR); an
     * fd that was never open is not in socks. */
    if (traced_call(tgid))
        sock_close(ctx, tgid, (int)regs->di, CLOSE_CLOSE, -1);
    return 0;
}

/* A read-family call that returned 0 on a known stream socket, having asked
 * for something: end of stream. */
static __always_inline int read_eof(void *ctx, __u32 tgid, int fd)
{
    struct sock_val *v = sock_get(tgid, fd);
    if (!v || v->type != SOCK_STREAM)
        return 0;
    __u32 n = __sync_add_and_fetch(&v->eofs, 1);
    if (n & (n - 1)) /* the first, then at powers of two */
        return 0;
    struct cwb_event *ev = event_start(ctx, CWB_EOF, fd, n == 1);
    if (!ev)
        return 0;
    ev->a0 = n;
    event_submit(ev, 0);
    return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(on_sys_exit, struct pt_regs *regs, long ret)
{
    long nr = regs->orig_ax;
    switch (nr) {
    case NR_read:
    case NR_readv:
    case NR_recvfrom:
        if (ret != 0 || !regs->dx) /* data, an error, or a read of 0 bytes */
            return 0;
        break;
    case NR_recvmsg:
        if (ret != 0)
            return 0;
        break;
    case NR_splice:                /* Go's io.Copy between connections reads this way */
        if (ret != 0 || !regs->r8) /* moved data, failed, or asked for 0 bytes */
            return 0;
        break;
    case NR_socket:
    case NR_socketpair:
    case NR_accept:
    case NR_accept4:
    case NR_connect:
    case NR_listen:
    case NR_shutdown:
    case NR_dup:
    case NR_dup2:
    case NR_dup3:
    case NR_fcntl:
    case NR_close_range: break;
    default: return 0;
    }
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (!traced_call(tgid))
        return 0;
    unsigned long a0 = regs->di, a1 = regs->si, a3 = regs->r10;
    int fd = (int)a0, newfd = -1;
    struct cwb_event *ev;

    switch (nr) {
    case NR_read:
    case NR_readv:
    case NR_recvfrom:
    case NR_recvmsg:
    case NR_splice: return read_eof(ctx, tgid, fd); /* splice's fd_in is its first argument */
    case NR_socket:
        if (ret < 0)
            return 0;
        sock_add(tgid, ret, a1 & 0xf);
        ev = event_start(ctx, CWB_SOCKET, ret, 1);
        if (!ev)
            return 0;
        ev->a0 = a0;
        ev->a1 = a1 & 0xf;
        fill_sockaddrs(ev, ret);
        break;
    case NR_socketpair: {
        int sv[2] = {-1, -1};
        if (ret < 0 || bpf_probe_read_user(sv, sizeof sv, (void *)a3))
            return 0;
        __u16 type = a1 & 0xf;
        sock_add(tgid, sv[0], type);
        sock_add(tgid, sv[1], type);
        ev = event_start(ctx, CWB_SOCKETPAIR, sv[0], 1);
        if (!ev)
            return 0;
        ev->a0 = sv[1];
        ev->a1 = (__u32)a0;
        ev->a2 = type;
        fill_sockaddrs(ev, sv[0]);
        break;
    }
    case NR_accept:
    case NR_accept4:
        if (ret < 0)
            return 0;
        ev = event_start(ctx, CWB_ACCEPT, ret, 1);
        if (!ev) {
            sock_add(tgid, ret, SOCK_STREAM);
            return 0;
        }
        ev->a0 = fd;
        fill_sockaddrs(ev, ret);
        sock_add(tgid, ret, ev->sk_type ? ev->sk_type : SOCK_STREAM);
        break;
    case NR_connect:
    case NR_listen:
    case NR_shutdown: {
        __u16 kind = nr == NR_connect ? CWB_CONNECT : nr == NR_listen ? CWB_LISTEN : CWB_SHUTDOWN;
        if (!sock_get(tgid, fd))
            return 0;
        ev = event_start(ctx, kind, fd, kind != CWB_LISTEN);
        if (!ev)
            return 0;
        ev->a0 = kind == CWB_SHUTDOWN ? (long)a1 : ret;
        ev->a1 = ret;
        fill_sockaddrs(ev, fd);
        break;
    }
    case NR_fcntl:
        if (a1 != F_DUPFD && a1 != F_DUPFD_CLOEXEC)
            return 0;
        /* fall through */
    case NR_dup:
    case NR_dup2:
    case NR_dup3: {
        if (nr == NR_dup2 || nr == NR_dup3)
            newfd = (int)a1;
        if (ret < 0 || ret == fd)
            return 0;
        /* dup2/dup3 over an open socket closed it; newfd was never free, so
         * no other thread can have reused it before this exit. */
        if (newfd >= 0)
            sock_close(ctx, tgid, newfd, CLOSE_DUP2, fd);
        struct sock_val *v = sock_get(tgid, fd);
        if (!v)
            return 0;
        sock_add(tgid, ret, v->type);
        ev = event_start(ctx, CWB_DUP, ret, 1);
        if (!ev)
            return 0;
        ev->a0 = fd;
        break;
    }
    case NR_close_range:
        if (ret < 0)
            return 0;
        /* User space forgets the range's sockets in socks: it knows them. */
        ev = event_start(ctx, CWB_CLOSE_RANGE, -1, 1);
        if (!ev)
            return 0;
        ev->a0 = a0;
        ev->a1 = a1;
        break;
    default: return 0;
    }
    event_submit(ev, 0);
    if (nr == NR_socket)
        send_request(ctx, tgid, ret, regs->r14);
    return 0;
}

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
    __u8 fresh = TRACED_NEW;
    bpf_map_update_elem(&traced, &ctgid, &fresh, BPF_ANY);
    struct cwb_event *ev = event_start(ctx, CWB_FORK, -1, 0);
    if (!ev)
        return 0;
    ev->a0 = ctgid;
    event_submit(ev, 1);
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
        event_submit(ev, 1);
    /* The new image gets a new ring, at its next record. */
    __u8 fresh = TRACED_NEW;
    bpf_map_update_elem(&traced, &tgid, &fresh, BPF_EXIST);
    return 0;
}

/* The last thread of a process: its tgid leaves the tree, its sockets the map
 * (user space deletes them: it knows which). Its exit_code (wait status:
 * exit status << 8, or the signal that killed it) tells an exit from a death. */
SEC("raw_tracepoint/sched_process_exit")
int on_task_exit(struct bpf_raw_tracepoint_args *ctx)
{
    struct task_struct *t = (struct task_struct *)ctx->args[0];
    __u32 tgid = BPF_CORE_READ(t, tgid);
    if (!is_traced(tgid) || BPF_CORE_READ(t, signal, live.counter) != 0)
        return 0;
    bpf_map_delete_elem(&traced, &tgid);
    struct cwb_event *ev = event_start(ctx, CWB_EXIT, -1, 0);
    if (!ev)
        return 0;
    ev->tgid = tgid;
    ev->a0 = BPF_CORE_READ(t, exit_code);
    event_submit(ev, 1);
    return 0;
}

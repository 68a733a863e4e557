/*
 * kernel.c - reads a live process's sockets from /proc and sock_diag.
 */
#include "kernel.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../common/proc_stat.h"
#include "../common/sock_diag.h"

uint64_t cw_mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int cw_proc_stat(int pid, char *state, int *ppid, uint64_t *starttime)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    struct cw_pstat st;
    if (cw_pstat_parse(buf, n, &st) != 0)
        return 0;
    *state = st.state;
    *ppid = st.ppid;
    *starttime = st.starttime;
    return 1;
}

void cw_proc_exe(int pid, char *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    ssize_t l = readlink(path, buf, len - 1);
    buf[l > 0 ? l : 0] = 0;
}

void cw_proc_fd_usage(int pid, int *open, long *limit)
{
    char path[64];
    *open = -1;
    *limit = -1;
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (d) {
        int n = 0;
        for (struct dirent *e; (e = readdir(d));)
            n += e->d_name[0] != '.';
        closedir(d);
        *open = n;
    }
    snprintf(path, sizeof path, "/proc/%d/limits", pid);
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        long soft;
        if (sscanf(line, "Max open files %ld", &soft) == 1) {
            *limit = soft;
            break;
        }
    }
    fclose(f);
}

int cw_pid_alive(int pid, uint64_t *starttime)
{
    char state;
    int ppid;
    uint64_t start;
    if (!cw_proc_stat(pid, &state, &ppid, &start) || state == 'Z')
        return 0; /* a zombie holds no fds */
    if (starttime)
        *starttime = start;
    return 1;
}

static int by_inode(const void *a, const void *b)
{
    uint64_t x = ((const struct cw_ksock *)a)->inode, y = ((const struct cw_ksock *)b)->inode;
    return x < y ? -1 : x > y;
}

const struct cw_ksock *cw_kview_find(const struct cw_kview *v, uint64_t inode)
{
    struct cw_ksock key = {.inode = inode};
    return v->n ? bsearch(&key, v->socks, (size_t)v->n, sizeof key, by_inode) : NULL;
}

static void diag_addr(struct cw_addr *a, int family, const __be32 *ip, __be16 port)
{
    memset(a, 0, sizeof *a);
    a->family = (uint16_t)family;
    a->port = ntohs(port);
    memcpy(a->bytes, ip, family == AF_INET ? 4 : 16);
}

static int join_diag(void *ctx, const struct inet_diag_msg *m, uint32_t last_ack_ms)
{
    struct cw_kview *v = ctx;
    struct cw_ksock *s = (struct cw_ksock *)cw_kview_find(v, m->idiag_inode);
    if (!s)
        return 0;
    s->is_tcp = 1;
    s->state = m->idiag_state;
    s->recv_q = m->idiag_rqueue;
    /* idiag_rqueue is rcv_nxt - copied_seq, and the peer's FIN takes a
     * sequence number until the program reads it: in the states after a
     * received FIN a non-zero queue holds that FIN, which is not a byte (an
     * idle keep-alive socket in CLOSE_WAIT would show "1 unread byte"). */
    if (s->recv_q && (s->state == CW_TCP_CLOSE_WAIT || s->state == CW_TCP_LAST_ACK ||
                      s->state == CW_TCP_CLOSING))
        s->recv_q--;
    s->send_q = m->idiag_wqueue;
    /* The clock read after the kernel wrote its age: errs on the young side. */
    if (s->state == CW_TCP_CLOSE_WAIT)
        s->fin_mono_ns = cw_fin_from_age(cw_mono_now(), last_ack_ms);
    diag_addr(&s->local, m->idiag_family, m->id.idiag_src, m->id.idiag_sport);
    diag_addr(&s->peer, m->idiag_family, m->id.idiag_dst, m->id.idiag_dport);
    return 0;
}

int cw_kernel_view(int pid, struct cw_kview *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->pid = pid;
    out->taken_mono_ns = cw_mono_now();
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (!d) {
        int e = errno;
        if (e == ENOENT)
            snprintf(err, errlen, "pid %d: no such process", pid);
        else
            snprintf(err, errlen, "pid %d: cannot list its fds (%s): it must be your process", pid,
                     strerror(e));
        return -1;
    }
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        char link[300], target[128];
        snprintf(link, sizeof link, "/proc/%d/fd/%s", pid, e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n <= 8)
            continue;
        target[n] = 0;
        if (strncmp(target, "socket:[", 8))
            continue;
        if (out->n == cap) {
            cap = cap ? cap * 2 : 64;
            struct cw_ksock *s = realloc(out->socks, (size_t)cap * sizeof *s);
            if (!s)
                break;
            out->socks = s;
        }
        struct cw_ksock *s = &out->socks[out->n++];
        memset(s, 0, sizeof *s);
        s->fd = atoi(e->d_name);
        s->inode = strtoull(target + 8, NULL, 10);
    }
    closedir(d);
    if (out->n) {
        /* Only with sockets: a process without any has no array, and
         * qsort(NULL, 0, ...) is undefined (UBSan stops the report). */
        qsort(out->socks, (size_t)out->n, sizeof *out->socks, by_inode);
        int r = cw_sock_diag_dump_aged(CW_TCP_OWNED_STATES, join_diag, out);
        if (r != 0) {
            snprintf(err, errlen, "pid %d: sock_diag failed: %s", pid, strerror(-r));
            cw_kview_free(out);
            return -1;
        }
    }
    return 0;
}

void cw_kview_free(struct cw_kview *v)
{
    free(v->socks);
    v->socks = NULL;
    v->n = 0;
}

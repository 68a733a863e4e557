/*
 * proc.c - what /proc says about a process, read with raw system calls (we
 * may run in a fork child, before libc is set up, or in the sampler): a
 * file's bytes, the stat line parsed by common/proc_stat.c, and the fds of
 * the program (ours, or in the sampler the program's) with their links.
 */
#include "cw.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

ssize_t cw_slurp(const char *path, char *buf, size_t cap)
{
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t got = 0;
    while (got < cap) {
        ssize_t r = syscall(SYS_read, fd, buf + got, cap - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    syscall(SYS_close, fd);
    return (ssize_t)got;
}

int cw_pstat_read(pid_t pid, struct cw_pstat *out)
{
    char path[48], buf[1024];
    if (pid)
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    else
        snprintf(path, sizeof path, "/proc/self/stat");
    ssize_t n = cw_slurp(path, buf, sizeof buf);
    return n > 0 ? cw_pstat_parse(buf, (size_t)n, out) : -1;
}

/*
 * Whose fds: ours (in the program), or, in the sampler process, the
 * program's, listed from /proc/PID/fd. The sampler never takes a reference
 * to one of the program's sockets (no pidfd_getfd): a copy in its hands
 * would keep a socket the program closes alive, its epoll registrations
 * firing and its port bound. It asks sock_diag instead.
 */
static struct {
    int remote;
    char fd_dir[48];
} prog = {0, "/proc/self/fd"};

void cw_proc_fds_of(pid_t pid)
{
    prog.remote = 1;
    snprintf(prog.fd_dir, sizeof prog.fd_dir, "/proc/%d/fd", (int)pid);
}

void cw_for_each_fd(void (*fn)(int fd, void *ctx), void *ctx)
{
    int dir = (int)syscall(SYS_openat, AT_FDCWD, prog.fd_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0)
        return;
    char buf[8192];
    for (;;) {
        long n = syscall(SYS_getdents64, dir, buf, sizeof buf);
        if (n <= 0)
            break;
        for (long off = 0; off < n;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            off += d->d_reclen;
            if (d->d_name[0] < '0' || d->d_name[0] > '9')
                continue;
            int fd = atoi(d->d_name);
            if (prog.remote || fd != dir) /* in the program, dir is one of the listed */
                fn(fd, ctx);
        }
    }
    syscall(SYS_close, dir);
}

/* readlink of the fd: 0 and errno on failure. */
static long fd_link(int fd, char *link, size_t cap)
{
    char path[96];
    snprintf(path, sizeof path, "%s/%d", prog.fd_dir, fd);
    long n = syscall(SYS_readlinkat, AT_FDCWD, path, link, cap - 1);
    if (n < 0)
        return 0;
    link[n] = 0;
    return n;
}

uint64_t cw_fd_socket_inode(int fd)
{
    char link[64];
    if (fd_link(fd, link, sizeof link) <= 8 || strncmp(link, "socket:[", 8))
        return 0;
    return strtoull(link + 8, NULL, 10);
}

int cw_fd_gone(int fd)
{
    char link[64];
    return !fd_link(fd, link, sizeof link) && errno == ENOENT;
}

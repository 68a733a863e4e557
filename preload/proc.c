/*
 * proc.c - what /proc says about a process, read with raw system calls (we
 * may run in a fork child, before libc is set up, or in the sampler): a
 * file's bytes, and the stat line parsed by common/proc_stat.c.
 */
#include "cw.h"

#include <fcntl.h>
#include <stdio.h>
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

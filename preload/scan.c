/*
 * scan.c - what the program's own fd table says, looked at from inside the
 * program: the sockets it inherited across exec or fork, found at start,
 * and the kernel's state of every socket still open at exit. (The sampler
 * process, sampler.c, looks at the program from outside.)
 */
#include "cw.h"
#include "../common/sock_diag.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void inherit_one(int fd, void *from_fork)
{
    struct cw_fd_entry *e = cw_fd(fd);
    uint64_t ino = cw_fd_socket_inode(fd);
    if (!ino || (e && (e->sid & CW_SID_OPEN) && e->inode == ino))
        return;
    cw_on_found(fd, CW_ORIGIN_INHERITED);
    if (e && from_fork)
        e->flags |= CW_FD_FROM_FORK;
}

void cw_scan_inherited(int from_fork)
{
    cw_for_each_fd(inherit_one, from_fork ? (void *)1 : NULL);
}

static void note_socket(int fd, void *found)
{
    if (!*(int *)found && cw_fd_socket_inode(fd))
        *(int *)found = 1;
}

int cw_has_inherited_socket(void)
{
    int found = 0;
    cw_for_each_fd(note_socket, &found);
    return found;
}

/*
 * At exit, the state of every socket still open, asked of each one directly:
 * this runs on a program thread, in the program's own fd table. A sock_diag
 * dump instead would walk every TCP socket of the host, thousands of
 * TIME_WAIT ones after a busy run, for a few of ours.
 */
void cw_final_snapshot(void)
{
    uint64_t now = cw_now();
    int hwm = cw_fd_hwm();
    for (int fd = 0; fd < hwm && cw.hdr->sockets_open; fd++) {
        struct cw_fd_entry *e = cw_fd(fd);
        uint64_t sid = atomic_load((_Atomic uint64_t *)&e->sid);
        struct tcp_info ti;
        socklen_t len = sizeof ti;
        struct stat st;
        if ((sid & CW_SID_OPEN) && cw_is_tcp(e->family, e->type) &&
            syscall(SYS_fstat, fd, &st) == 0 && (uint64_t)st.st_ino == e->inode &&
            syscall(SYS_getsockopt, fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0)
            cw_on_tcp_state(fd, e, sid, ti.tcpi_state, now,
                            ti.tcpi_state == CW_TCP_CLOSE_WAIT
                                ? cw_fin_from_age(cw_now(), ti.tcpi_last_ack_recv)
                                : 0);
    }
}

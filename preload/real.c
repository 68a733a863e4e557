/*
 * real.c - finds the functions we interpose, the ones next in the lookup
 * order after us (normally glibc's).
 *
 * Resolution happens in the constructor and, because hooks can be called
 * before it (other libraries' constructors), on first use as well. Every
 * pointer is written with a plain store of an aligned word: a racing thread
 * sees either NULL (and resolves again, harmlessly) or the final value.
 */
#include "cw.h"

#include <dlfcn.h>
#include <stdarg.h>
#include <unistd.h>

struct cw_real cw_real;

void cw_resolve_real(void)
{
#define R(field, sym)                                                                              \
    if (!cw_real.field)                                                                            \
    *(void **)&cw_real.field = dlsym(RTLD_NEXT, sym)
    R(vfork, "vfork");
    R(clone, "clone");
    R(fork_no_handlers, "_Fork");
    R(pipe2, "pipe2");
    R(socket, "socket");
    R(socketpair, "socketpair");
    R(accept, "accept");
    R(accept4, "accept4");
    R(connect, "connect");
    R(listen, "listen");
    R(shutdown, "shutdown");
    R(close, "close");
    R(dup, "dup");
    R(dup2, "dup2");
    R(dup3, "dup3");
    R(fcntl, "fcntl");
    R(fcntl64, "fcntl64");
    R(close_range, "close_range");
    R(closefrom, "closefrom");
    R(fclose, "fclose");
    R(sys, "syscall");
    R(read, "read");
    R(readv, "readv");
    R(recv, "recv");
    R(recvfrom, "recvfrom");
    R(recvmsg, "recvmsg");
    R(recvmmsg, "recvmmsg");
    R(read_chk, "__read_chk");
    R(recv_chk, "__recv_chk");
    R(recvfrom_chk, "__recvfrom_chk");
    R(epoll_ctl, "epoll_ctl");
    R(epoll_wait, "epoll_wait");
    R(epoll_pwait, "epoll_pwait");
    R(epoll_pwait2, "epoll_pwait2");
    R(poll, "poll");
    R(ppoll, "ppoll");
    R(poll_chk, "__poll_chk");
    R(ppoll_chk, "__ppoll_chk");
    R(setuid, "setuid");
    R(seteuid, "seteuid");
    R(setreuid, "setreuid");
    R(setresuid, "setresuid");
    R(dlopen, "dlopen");
    R(exit, "exit");
    R(libc_start_main, "__libc_start_main");
#undef R
    if (!cw_real.thread_db_tid)
        cw_real.thread_db_tid = dlsym(RTLD_DEFAULT, "_thread_db_pthread_tid");
    /* fcntl64 exists only in newer glibc; fcntl has the same ABI on 64-bit. */
    if (!cw_real.fcntl64)
        cw_real.fcntl64 = cw_real.fcntl;
}

#undef syscall
long cw_raw_syscall(long nr, ...)
{
    va_list ap;
    va_start(ap, nr);
    long a[6];
    for (int i = 0; i < 6; i++)
        a[i] = va_arg(ap, long);
    va_end(ap);
    long (*real)(long, ...) = REAL(sys);
    return real(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

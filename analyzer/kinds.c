/*
 * kinds.c - the table of finding kinds (see kinds.h).
 */
#include "kinds.h"

#include <string.h>

static const struct cw_kind_info kinds[CW_K_COUNT] = {
    [CW_K_CLOSE_WAIT] =
        {
            CW_K_CLOSE_WAIT,
            "close_wait",
            0,
            1,
            "%d socket in CLOSE_WAIT without close()",
            "%d sockets in CLOSE_WAIT without close()",
            "The peer closed the connection, but this process never called close(): every such "
            "socket holds an fd until the process runs out of them. Close the socket on the path "
            "that sees EOF (read()==0), on error paths, and for idle pooled connections.",
            "Socket left in CLOSE_WAIT without close()",
            CW_PLACE_OPEN,
        },
    [CW_K_EOF_SPIN] =
        {
            CW_K_EOF_SPIN,
            "eof_spin",
            1,
            1,
            "%d socket where read() returned 0 again and again",
            "%d sockets where read() returned 0 again and again",
            "read() returned 0 (end of file) repeatedly on the same socket: the loop does not "
            "treat 0 as 'peer closed' and spins, burning CPU.",
            "read() returns 0 again and again on a socket",
            CW_PLACE_OPEN,
        },
    [CW_K_EMFILE] =
        {
            CW_K_EMFILE,
            "emfile",
            2,
            1,
            "%d failure to get a socket: out of file descriptors",
            "%d failures to get a socket: out of file descriptors",
            "accept() or socket() failed with EMFILE/ENFILE: the process (or system) ran out of "
            "file descriptors, usually because of the leaks above.",
            "Out of file descriptors when creating a socket",
            CW_PLACE_OPEN,
        },
    [CW_K_DOUBLE_CLOSE] =
        {
            CW_K_DOUBLE_CLOSE,
            "double_close",
            3,
            1,
            "%d double close",
            "%d double closes",
            "close() was called on an fd that was already closed: if another thread reused the "
            "number in between, the second close destroys someone else's fd.",
            "close() of an already closed file descriptor",
            CW_PLACE_CLOSE,
        },
    [CW_K_LATE_CLOSE] =
        {
            CW_K_LATE_CLOSE,
            "late_close",
            4,
            1,
            "%d socket closed late, after sitting in CLOSE_WAIT",
            "%d sockets closed late, after sitting in CLOSE_WAIT",
            "The socket was closed eventually, but only long after the peer closed it: look for "
            "an EOF handled late, or idle connections reaped by a timer.",
            "Socket closed long after the peer closed it",
            CW_PLACE_OPEN,
        },
    [CW_K_UNTRACKED] =
        {
            CW_K_UNTRACKED,
            "untracked",
            5,
            1,
            "%d socket in CLOSE_WAIT that closewatch did not see being opened",
            "%d sockets in CLOSE_WAIT that closewatch did not see being opened",
            "The kernel shows this socket in CLOSE_WAIT, but closewatch did not see it being "
            "made (created without going through libc: Go runtime, static binary, io_uring, raw "
            "syscalls; or before closewatch attached), so there is no backtrace: only the "
            "kernel's view.",
            "Socket in CLOSE_WAIT created outside libc",
            CW_PLACE_OPEN,
        },
    [CW_K_OPEN_AT_EXIT] =
        {
            CW_K_OPEN_AT_EXIT,
            "open_at_exit",
            6,
            0,
            "%d socket still open at exit",
            "%d sockets still open at exit",
            "Still open when the process ended (information only).",
            "Socket still open when the process ended",
            CW_PLACE_OPEN,
        },
};

const struct cw_kind_info *cw_kind(enum cw_kind k)
{
    return &kinds[(unsigned)k < CW_K_COUNT ? k : CW_K_OPEN_AT_EXIT];
}

const char *cw_kind_name(enum cw_kind k)
{
    return (unsigned)k < CW_K_COUNT ? kinds[k].name : "unknown";
}

int cw_kind_is_error(enum cw_kind k)
{
    return cw_kind(k)->is_error;
}

int cw_kind_by_name(const char *name)
{
    for (int k = 0; k < CW_K_COUNT; k++)
        if (!strcmp(kinds[k].name, name))
            return k;
    return -1;
}

int cw_error_count(const int *counts)
{
    int n = 0;
    for (int k = 0; k < CW_K_COUNT; k++)
        n += kinds[k].is_error ? counts[k] : 0;
    return n;
}

/*
 * init.c - the library's life: the constructor that sets up recording, the
 * destructor that takes the final snapshot, fork handling, and the
 * nesting guard every record path goes through.
 */
#define UNW_LOCAL_ONLY
#include "cw.h"

#include <dlfcn.h>
#include <libunwind.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

struct cw_state cw;
__thread int cw_nesting __attribute__((tls_model("initial-exec")));

CW_HIDDEN void cw_epoll_init(void);
CW_HIDDEN void cw_shm_mark_execed_predecessors(void);

uint64_t cw_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int cw_enter(void)
{
    if (cw_nesting) {
        /* A signal handler interrupted a record on this thread, or we are
         * inside libunwind: passing through is all we may do. */
        if (cw.hdr)
            atomic_fetch_add((_Atomic uint64_t *)&cw.hdr->events_dropped, 1);
        return 0;
    }
    if (!cw.hdr)
        return 0;
    /* A vfork child shares our memory and thread: record nothing for it. The
     * same check covers a fork child before our atfork handler ran. */
    if ((pid_t)syscall(SYS_getpid) != cw.pid)
        return 0;
    cw_nesting++;
    return 1;
}

static int refuse_pipes;

CW_EXPORT int pipe2(int fds[2], int flags)
{
    static int (*real_pipe2)(int[2], int);
    if (refuse_pipes) {
        errno = EMFILE;
        return -1;
    }
    if (!real_pipe2)
        *(void **)&real_pipe2 = dlsym(RTLD_NEXT, "pipe2");
    return real_pipe2(fds, flags);
}

static void atfork_child(void)
{
    cw_nesting = 0;
    cw_sampler_after_fork();
    cw_shm_after_fork_child();
}

void cw_init(void)
{
    static _Atomic int once;
    if (atomic_exchange(&once, 1))
        return;
    cw_nesting++;
    int saved = errno;
    cw_resolve_real();
    const char *off = getenv("CLOSEWATCH_DISABLE");
    if ((!off || !*off || *off == '0') && cw_shm_create() == 0) {
        cw_epoll_init();
        cw_modules_refresh();
        cw_shm_mark_execed_predecessors();
        /* The first unw_backtrace initializes libunwind; do it now, not
         * inside the program's first accept(). Its initialization opens a
         * pipe for memory validation that unw_backtrace never uses; refusing
         * that pipe keeps two fds of ours out of the program. */
        void *warm[4];
        refuse_pipes = 1;
        unw_backtrace(warm, 4);
        refuse_pipes = 0;
        cw_scan_inherited();
        pthread_atfork(NULL, NULL, atfork_child);
    }
    errno = saved;
    cw_nesting--;
}

__attribute__((constructor)) static void cw_ctor(void) { cw_init(); }

__attribute__((destructor)) static void cw_dtor(void)
{
    if (!cw.hdr || (pid_t)syscall(SYS_getpid) != cw.pid)
        return;
    int saved = errno;
    cw_nesting++;
    cw_modules_refresh();
    cw_final_snapshot();
    cw_shm_mark_exit();
    /* A process that never touched a socket (the shells and compilers of a
     * traced `make check`) leaves no file behind. */
    const char *keep = getenv("CLOSEWATCH_KEEP_EMPTY");
    if (cw.hdr->next_sid == 1 && cw.hdr->write_idx == 0 && !(keep && *keep == '1'))
        unlink(cw.path);
    cw_nesting--;
    errno = saved;
}

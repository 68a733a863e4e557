/*
 * spawn.c - starting the sampler process (sampler.c, helper.c), from the
 * program: with the first tracked TCP socket, or at once in a Go program.
 *
 * Why a process and not a thread: a second thread makes glibc take its
 * multi-threaded path in every cancellable call of the program (read,
 * write, accept, close: +20 ns each, measured), and shares the program's fd
 * table. It is started through a short-lived middle child, so that it is
 * not the program's child (no SIGCHLD, nothing new for its wait()); it
 * holds no fds of the program and no copy of its memory (exec'd at once).
 */
#include "cw.h"

#include <dlfcn.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define RECONCILE_EVERY 5

#ifndef SYS_close_range
#define SYS_close_range 436
#endif

static unsigned reconcile_every = RECONCILE_EVERY;
static char self_path[PATH_MAX]; /* this library, absolute: what we exec */

/* Where this library is, resolved now: the program may chdir later. */
void cw_sampler_init(void)
{
    Dl_info info;
    if (!dladdr((void *)cw_sampler_init, &info) || !info.dli_fname)
        return;
    /* An absolute path stays valid through the program's chdir: no need
     * for realpath's lstat of every component in every process. */
    if (info.dli_fname[0] == '/')
        snprintf(self_path, sizeof self_path, "%s", info.dli_fname);
    else if (!realpath(info.dli_fname, self_path))
        self_path[0] = 0;
}

struct spawn {
    char *argv[7];
    char *envp[2];
    uint8_t *stack; /* for the second child */
    _Atomic pid_t sampler;
};

#define SPAWN_STACK 16384

/* The second child: becomes the sampler. Its fd table is a copy of the
 * program's: it lets go of all of it before exec, or the sampler would hold
 * the program's sockets open. */
static int become_sampler(void *arg)
{
    struct spawn *s = arg;
    if (syscall(SYS_close_range, 0L, (long)~0U, 0L) == 0)
        syscall(SYS_execve, self_path, s->argv, s->envp);
    syscall(SYS_exit, 127L);
    return 127;
}

/* The first child: starts the sampler and exits at once, so that the
 * sampler is nobody's child here (an exec'd child of the program would
 * signal it SIGCHLD and show in its wait()). Created without an exit signal
 * and reaped by cw_sampler_start, this one is never seen either. Both share
 * the program's memory and, blocked, its thread until they exec or exit:
 * raw system calls only. */
static int start_sampler(void *arg)
{
    struct spawn *s = arg;
    int pid =
        cw_real.clone(become_sampler, s->stack + SPAWN_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, s);
    atomic_store(&s->sampler, pid > 0 ? pid : 0);
    syscall(SYS_exit, 0L);
    return 0;
}

void cw_sampler_start(void)
{
    int idle = 0;
    if (cw.sample_ms == 0 || !cw.hdr || !self_path[0] ||
        !atomic_compare_exchange_strong(&cw.sampler_state, &idle, 1))
        return;
    int saved = errno;
    /* Orphans are adopted by init or the nearest subreaper: when that is
     * this very process, the sampler would be its child after all. */
    int subreaper = 0;
    if (cw.pid == 1 || (prctl(PR_GET_CHILD_SUBREAPER, &subreaper) == 0 && subreaper)) {
        errno = saved;
        return;
    }
    char pid[16], ms[16], every[16], image[24];
    struct cw_pstat self;
    if (cw_pstat_read(cw.pid, &self) != 0 || !self.image_known) {
        errno = saved;
        return;
    }
    snprintf(image, sizeof image, "%llu", (unsigned long long)self.image);
    snprintf(pid, sizeof pid, "%d", (int)cw.pid);
    snprintf(ms, sizeof ms, "%u", cw.sample_ms);
    snprintf(every, sizeof every, "%u", reconcile_every);
    static uint8_t stacks[2][SPAWN_STACK] __attribute__((aligned(16)));
    struct spawn s = {{(char *)"closewatch-sampler", pid, cw.path, ms, every, image, NULL},
                      {NULL, NULL},
                      stacks[1],
                      0};
    /* The sampler's libraries are found where ours were. */
    extern char **environ;
    for (char **e = environ; e && *e; e++)
        if (!strncmp(*e, "LD_LIBRARY_PATH=", 16))
            s.envp[0] = *e;
    sigset_t all, old;
    sigfillset(&all);
    /* No handler of the program may run in the children; the sampler keeps
     * them all blocked for good. */
    pthread_sigmask(SIG_SETMASK, &all, &old);
    (void)REAL(sys); /* resolved before the children need it */
    /* glibc's clone, not our trampoline (vfork.c): these children run none
     * of our hooks. */
    int (*real_clone)(int (*)(void *), void *, int, void *, ...) = REAL(clone);
    int first = real_clone
                    ? real_clone(start_sampler, stacks[0] + SPAWN_STACK, CLONE_VM | CLONE_VFORK, &s)
                    : -1;
    if (first > 0)
        syscall(SYS_wait4, (long)first, NULL, (long)__WALL, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    atomic_store((_Atomic int32_t *)&cw.hdr->sampler_pid, atomic_load(&s.sampler));
    errno = saved;
}

void cw_sampler_start_for_raw_syscalls(void)
{
    reconcile_every = 1;
    cw_sampler_start();
}

void cw_sampler_after_fork(void)
{
    atomic_store(&cw.sampler_state, 0); /* the parent's sampler is not ours */
}

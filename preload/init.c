/*
 * init.c - the library's life: the constructor that sets up recording, the
 * destructor that takes the final snapshot, fork handling, and the start
 * of recording at the first socket. (The nesting guard, cw_enter, is
 * inline in cw.h.)
 */
#include "cw.h"
#include "../common/elf_note.h"

#include <dlfcn.h>
#include <elf.h>
#include <libunwind.h>
#include <link.h>
#include <string.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

struct cw_state cw;
__thread int cw_nesting __attribute__((tls_model("initial-exec")));

/* Whether the main program carries Go's build-id note (ELF note named "Go"):
 * Go makes its socket calls without libc, so only the sampler sees them. */
static int note_is_go(struct dl_phdr_info *info, size_t size, void *found)
{
    (void)size;
    uint32_t len;
    *(int *)found = cw_elf_note(info, "Go", CW_NOTE_ANY_TYPE, &len) != NULL;
    return 1; /* the main program comes first: stop after it */
}

static int main_is_go(void)
{
    int found = 0;
    dl_iterate_phdr(note_is_go, &found);
    return found;
}

/*
 * Recording starts at the first socket, not at start: the shells, compilers
 * and test runners of a traced `make check` never open one and must cost
 * next to nothing and leave no file. State: 0 not started, 1 being started
 * (by one thread; the others drop their events rather than wait), 2 on,
 * 3 off (disabled, or the ring could not be made).
 */
static _Atomic int rec_state;
static _Atomic uint64_t dropped_while_starting;

int cw_recording_start(void)
{
    cw_init(); /* a hook may run before our constructor */
    /* Never in a child that shares our memory (vfork, clone): see cw_enter. */
    if (__atomic_load_n(&cw_unforked_child_seen, __ATOMIC_RELAXED) &&
        (pid_t)syscall(SYS_getpid) != cw.pid)
        return 0;
    int st = atomic_load_explicit(&rec_state, memory_order_acquire);
    if (st == 2)
        return cw.hdr != NULL;
    if (st == 0 && atomic_compare_exchange_strong(&rec_state, &st, 1)) {
        int saved = errno;
        cw_nesting++;
        int ok = cw_shm_create() == 0;
        if (ok) {
            cw_epoll_init();
            cw_modules_refresh();
            cw_stacks_warm_up();
            atomic_fetch_add((_Atomic uint64_t *)&cw.hdr->events_dropped,
                             atomic_exchange(&dropped_while_starting, 0));
        }
        atomic_store_explicit(&rec_state, ok ? 2 : 3, memory_order_release);
        cw_nesting--;
        errno = saved;
        return ok;
    }
    if (st == 1)
        atomic_fetch_add(&dropped_while_starting, 1);
    return 0;
}

static void atfork_child(void)
{
    cw_nesting = 0;
    cw.pid = (pid_t)syscall(SYS_getpid);
    /* A thread of the parent that was starting the ring does not exist here. */
    if (atomic_load(&rec_state) == 1)
        atomic_store(&rec_state, cw.hdr ? 2 : 0);
    cw_stacks_after_fork();
    cw_jframes_after_fork();
    cw_sampler_after_fork();
    cw_shm_after_fork_child();
    if (atomic_load(&rec_state) == 2 && !cw.hdr)
        atomic_store(&rec_state, 3);
}

/* The image's argv, as glibc hands it to constructors (NULL when a hook of
 * another library's constructor called cw_init before ours ran). */
static char *const *ctor_argv;

void cw_init(void)
{
    static _Atomic int once;
    if (atomic_exchange(&once, 1))
        return;
    cw_nesting++;
    int saved = errno;
    cw.pid = (pid_t)syscall(SYS_getpid);
    cw_resolve_real();
    cw_sampler_init();
    const char *off = getenv("CLOSEWATCH_DISABLE");
    if (off && *off && *off != '0') {
        atomic_store(&rec_state, 3);
    } else {
        cw_shm_configure();
        cw_pyframes_init();
        cw_shm_capture_start(cw.pid, ctor_argv);
        cw_shm_mark_execed_predecessors();
        pthread_atfork(NULL, NULL, atfork_child);
        /* Sockets inherited across exec make the ring at once. The sampler
         * starts with the first tracked socket, which never comes in a Go
         * program: only its sampler can find the sockets it creates with
         * raw syscalls (untracked), so start it now. */
        int go = main_is_go();
        if ((go || cw_has_inherited_socket()) && cw_recording_start()) {
            cw_scan_inherited(0);
            if (go)
                cw_sampler_start_for_raw_syscalls();
        }
    }
    errno = saved;
    cw_nesting--;
}

__attribute__((constructor)) static void cw_ctor(int argc, char **argv, char **envp)
{
    (void)argc;
    (void)envp;
    ctor_argv = argv;
    cw_init();
}

__attribute__((destructor)) static void cw_dtor(void)
{
    if (!cw.hdr || (pid_t)syscall(SYS_getpid) != cw.pid)
        return;
    int saved = errno;
    cw_nesting++;
    cw_final_snapshot();
    cw_shm_mark_exit();
    /* A ring made before any socket (at a privilege drop) that never got
     * one is not left behind. */
    if (cw.hdr->next_sid == 1 && cw.hdr->write_idx == 0)
        unlink(cw.path);
    cw_nesting--;
    errno = saved;
}

/*
 * helper.c - libclosewatch.so run as a program: the sampler process.
 *
 * The library carries an ELF interpreter and an entry point, so
 * `execve("libclosewatch.so", ...)` starts it like any executable (glibc's
 * libc.so.6 does the same to print its version). The loader runs the
 * constructors of our dependencies but not ours: nothing is recorded here.
 * cw_sampler_start (spawn.c) execs it with the program's pid and ring;
 * run by hand, it says what it is and exits.
 */
#include "cw.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define CW_INTERP "/lib64/ld-linux-x86-64.so.2"
#elif defined(__aarch64__)
#define CW_INTERP "/lib/ld-linux-aarch64.so.1"
#endif

#ifdef CW_INTERP
__attribute__((used, section(".interp"))) static const char cw_interp[] = CW_INTERP;

CW_HIDDEN void cw_helper_main(long argc, char **argv);

/* The kernel starts us with argc, argv... on the stack and no C runtime:
 * hand them to C with an aligned stack. */
#if defined(__x86_64__)
__asm__(".text\n"
        ".globl cw_helper_entry\n"
        ".type cw_helper_entry,@function\n"
        "cw_helper_entry:\n"
        "  endbr64\n"
        "  xor %ebp, %ebp\n"
        "  mov (%rsp), %rdi\n"
        "  lea 8(%rsp), %rsi\n"
        "  and $-16, %rsp\n"
        "  call cw_helper_main\n"
        "  hlt\n");
#elif defined(__aarch64__)
__asm__(".text\n"
        ".globl cw_helper_entry\n"
        ".type cw_helper_entry,%function\n"
        "cw_helper_entry:\n"
        "  mov x29, #0\n"
        "  mov x30, #0\n"
        "  ldr x0, [sp]\n"
        "  add x1, sp, #8\n"
        "  bl cw_helper_main\n"
        "  brk #0\n");
#endif

static void leave(int code)
{
    syscall(SYS_exit_group, (long)code);
    __builtin_unreachable();
}

/* Maps the program's ring; NULL if it is not the ring of that pid. */
static struct cw_header *map_ring(const char *path, pid_t pid)
{
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    void *map = MAP_FAILED;
    if (syscall(SYS_fstat, fd, &st) == 0 && st.st_uid == geteuid() &&
        (size_t)st.st_size >= sizeof(struct cw_header))
        map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    syscall(SYS_close, fd);
    if (map == MAP_FAILED)
        return NULL;
    struct cw_header *h = map;
    if (h->magic != CW_MAGIC || h->version != CW_LAYOUT_VERSION || h->pid != pid ||
        h->file_size != (uint64_t)st.st_size) {
        munmap(map, (size_t)st.st_size);
        return NULL;
    }
    return h;
}

void cw_helper_main(long argc, char **argv)
{
    if (argc != 6 || strcmp(argv[0], "closewatch-sampler") != 0) {
        static const char usage[] =
            "libclosewatch.so is loaded into a program with LD_PRELOAD, or by `closewatch run`;\n"
            "see closewatch(1). Run by itself it is closewatch's sampler process, started by\n"
            "the library.\n";
        if (write(2, usage, sizeof usage - 1) < 0)
            leave(2);
        leave(2);
    }
    /* Started with no fds at all: 0-2 on /dev/null, so nothing of ours ever
     * lands there, and out of the program's cwd, which we must not pin. */
    for (int fd = 0; fd < 3; fd++)
        if (syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDWR) < 0)
            leave(1);
    if (chdir("/") != 0)
        leave(1);
    cw_nesting = 1;                     /* should one of our hooks run here, it passes through */
    atomic_store(&cw.sampler_state, 1); /* and never starts another sampler */
    pid_t pid = (pid_t)atol(argv[1]);
    prctl(PR_SET_NAME, "cw-sampler", 0, 0, 0);
    setsid(); /* out of the program's job control: ^C and ^Z are its own */
    struct cw_header *h = map_ring(argv[2], pid);
    if (!h)
        leave(1);
    cw_shm_attach(h);
    cw.sample_ms = (uint32_t)atol(argv[3]);
    unsigned every = (unsigned)atol(argv[4]);
    if (cw.sample_ms > 0)
        cw_sampler_run(pid, every ? every : 1, strtoull(argv[5], NULL, 10));
    leave(0);
}
#endif

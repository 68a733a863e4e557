/*
 * vfork.c - knowing when a child may be running our hooks as if it were us.
 *
 * fork() runs our handler in the child (init.c), which gives it a ring of
 * its own. Children made otherwise do not: vfork() and clone(CLONE_VM) ones
 * run on the program's very memory, clone() and _Fork() ones on a copy of
 * it, and all of them still write to the program's ring, with fd tables of
 * their own. Only the getpid() check in cw_enter tells them from the
 * program, a system call on every recorded event. Most programs never make
 * such a child, so vfork, clone and _Fork are interposed (and the matching
 * raw system calls watched, hooks_life.c) to raise cw_unforked_child_seen,
 * and the check is made only once it is up.
 *
 * vfork and clone are assembly trampolines because a vfork wrapper must not
 * have a frame: the child returns through it and reuses that stack before
 * the parent resumes. Elsewhere than x86-64 the flag is up from the start.
 */
#include "cw.h"

#include <dlfcn.h>

int cw_unforked_child_seen;
CW_HIDDEN void *cw_real_vfork, *cw_real_clone;
CW_HIDDEN void *cw_resolve_vfork(void);
CW_HIDDEN void *cw_resolve_clone(void);

void *cw_resolve_vfork(void)
{
    if (!cw_real_vfork)
        cw_real_vfork = dlsym(RTLD_NEXT, "vfork");
    return cw_real_vfork;
}

void *cw_resolve_clone(void)
{
    if (!cw_real_clone)
        cw_real_clone = dlsym(RTLD_NEXT, "clone");
    return cw_real_clone;
}

/* A fork without fork handlers: a copy of our memory, so an ordinary
 * wrapper will do. */
CW_EXPORT pid_t _Fork(void)
{
    static pid_t (*real)(void);
    __atomic_store_n(&cw_unforked_child_seen, 1, __ATOMIC_RELAXED);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "_Fork");
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    return real();
}

#if defined(__x86_64__)
/* r11 is neither an argument nor preserved: free to hold the target. */
__asm__(".text\n"
        ".globl vfork\n"
        ".type vfork,@function\n"
        "vfork:\n"
        "  endbr64\n"
        "  movl $1, cw_unforked_child_seen(%rip)\n"
        "  mov cw_real_vfork(%rip), %r11\n"
        "  test %r11, %r11\n"
        "  jz 1f\n"
        "  jmp *%r11\n"
        "1:\n"
        "  sub $8, %rsp\n"
        "  call cw_resolve_vfork\n"
        "  add $8, %rsp\n"
        "  jmp *%rax\n"
        ".size vfork, .-vfork\n"

        /* int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...) */
        ".globl clone\n"
        ".type clone,@function\n"
        "clone:\n"
        "  endbr64\n"
        "  movl $1, cw_unforked_child_seen(%rip)\n"
        "  mov cw_real_clone(%rip), %r11\n"
        "  test %r11, %r11\n"
        "  jz 3f\n"
        "  jmp *%r11\n"
        "3:\n"
        "  push %rdi\n"
        "  push %rsi\n"
        "  push %rdx\n"
        "  push %rcx\n"
        "  push %r8\n"
        "  push %r9\n"
        "  push %rax\n" /* with the return address: 64 bytes, 16-aligned */
        "  call cw_resolve_clone\n"
        "  mov %rax, %r11\n"
        "  pop %rax\n"
        "  pop %r9\n"
        "  pop %r8\n"
        "  pop %rcx\n"
        "  pop %rdx\n"
        "  pop %rsi\n"
        "  pop %rdi\n"
        "  jmp *%r11\n"
        ".size clone, .-clone\n");

void cw_vfork_init(void)
{
    cw_resolve_vfork();
    cw_resolve_clone();
}
#else
void cw_vfork_init(void)
{
    cw_unforked_child_seen = 1;
}
#endif

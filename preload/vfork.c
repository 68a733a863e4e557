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

#include <stddef.h>

/* Elsewhere than x86-64 there are no trampolines: the check is always made. */
#if defined(__x86_64__)
int cw_unforked_child_seen;
#else
int cw_unforked_child_seen = 1;
#endif

/* A fork without fork handlers: a copy of our memory, so an ordinary
 * wrapper will do. */
CW_EXPORT pid_t _Fork(void)
{
    __atomic_store_n(&cw_unforked_child_seen, 1, __ATOMIC_RELAXED);
    pid_t (*real)(void) = REAL(fork_no_handlers);
    if (!real) {
        errno = ENOSYS;
        return -1;
    }
    return real();
}

#if defined(__x86_64__)
/* The trampolines read cw_real.vfork at cw_real+0 and cw_real.clone at
 * cw_real+8; cw_resolve_real fills them (and everything else) when they are
 * still NULL. r11 is neither an argument nor preserved: free to hold the
 * target. */
_Static_assert(offsetof(struct cw_real, vfork) == 0, "vfork trampoline reads cw_real+0");
_Static_assert(offsetof(struct cw_real, clone) == 8, "clone trampoline reads cw_real+8");
__asm__(".text\n"
        ".globl vfork\n"
        ".type vfork,@function\n"
        "vfork:\n"
        "  endbr64\n"
        "  movl $1, cw_unforked_child_seen(%rip)\n"
        "  mov cw_real(%rip), %r11\n"
        "  test %r11, %r11\n"
        "  jz 1f\n"
        "  jmp *%r11\n"
        "1:\n"
        "  sub $8, %rsp\n"
        "  call cw_resolve_real\n"
        "  add $8, %rsp\n"
        "  jmp *cw_real(%rip)\n"
        ".size vfork, .-vfork\n"

        /* int clone(int (*fn)(void *), void *stack, int flags, void *arg, ...) */
        ".globl clone\n"
        ".type clone,@function\n"
        "clone:\n"
        "  endbr64\n"
        "  movl $1, cw_unforked_child_seen(%rip)\n"
        "  mov cw_real+8(%rip), %r11\n"
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
        "  call cw_resolve_real\n"
        "  mov cw_real+8(%rip), %r11\n"
        "  pop %rax\n"
        "  pop %r9\n"
        "  pop %r8\n"
        "  pop %rcx\n"
        "  pop %rdx\n"
        "  pop %rsi\n"
        "  pop %rdi\n"
        "  jmp *%r11\n"
        ".size clone, .-clone\n");
#endif

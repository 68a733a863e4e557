/*
 * vfork.c - knowing when a vfork child may be running our hooks.
 *
 * A child made with vfork() or clone(CLONE_VM) runs on the program's memory,
 * and so on our tables, with its own copy of the fd table: its close(),
 * dup2() and close_range() before exec are not the program's. Only the
 * getpid() check in cw_enter tells them apart, a system call on every
 * recorded close. Most programs never make such a child: vfork and clone are
 * interposed by trampolines that raise cw_vm_child_seen and jump on to
 * glibc's, and the check is made only once that flag is up.
 *
 * The trampolines are assembly because a vfork wrapper must not have a
 * frame: the child returns through it and then reuses that stack before the
 * parent resumes. Elsewhere than x86-64 the flag is up from the start.
 */
#include "cw.h"

#include <dlfcn.h>

int cw_vm_child_seen;
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

#if defined(__x86_64__)
/* r11 is neither an argument nor preserved: free to hold the target. */
__asm__(".text\n"
        ".globl vfork\n"
        ".type vfork,@function\n"
        "vfork:\n"
        "  movl $1, cw_vm_child_seen(%rip)\n"
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
        "  testl $0x100, %edx\n" /* CLONE_VM */
        "  jz 2f\n"
        "  movl $1, cw_vm_child_seen(%rip)\n"
        "2:\n"
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
    cw_vm_child_seen = 1;
}
#endif

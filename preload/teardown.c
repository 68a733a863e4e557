/*
 * teardown.c - whether the process is tearing itself down, for the close
 * of a socket that sat in CLOSE_WAIT: a socket closed only by the process's
 * own teardown was leaked (the program never closed it, its runtime did on
 * the way out), and the report calls it close_wait, as a live report did.
 *
 * Four signs, each where the runtime shows it cheapest:
 *  - C and C++: main returned (__libc_start_main is interposed to see it)
 *    or exit() was called (interposed): atexit handlers, static
 *    destructors, stdio's cleanup run after that.
 *  - CPython: its finalization runs inside main; Py_IsFinalizing (3.13) or
 *    _Py_IsFinalizing (3.10-3.12), an atomic read of its runtime state.
 *  - Perl: global destruction runs in perl_destruct, which a close's
 *    backtrace passes through (the symbol is exported with its size).
 *  - Ruby: the finalizers at exit run from ruby_run_node's clean-up with no
 *    Ruby code executing, so the backtrace reaches ruby_run_node without
 *    passing rb_vm_exec; every close made by Ruby code passes it first.
 *    (rb_ec_cleanup itself is static: not in the dynamic symbol table.)
 *
 * Asked only for a close the recorder already finds late (it takes the
 * close's backtrace then): a prompt close, and every read, pays nothing.
 * Symbols are looked up on that path, again only when the module map grew.
 */
#include "cw.h"

#include <dlfcn.h>
#include <link.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Set once main returned or exit() was called in this process. */
static _Atomic int ending;

struct fn_range {
    uintptr_t lo, hi;
};

static struct fn_range perl_destruct_fn, ruby_run_node_fn, rb_vm_exec_fn;
static int (*py_is_finalizing)(void);
static _Atomic uint32_t resolved_for = UINT32_MAX; /* module_count at the last lookup */

static void teardown_begins(void)
{
    /* A vfork child calling exit() shares our memory: it is not us. */
    if ((pid_t)syscall(SYS_getpid) == cw.pid)
        atomic_store_explicit(&ending, 1, memory_order_relaxed);
}

/* [address, address + size) of an exported function, or an empty range. */
static struct fn_range fn_range(const char *name)
{
    void *p = dlsym(RTLD_DEFAULT, name);
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    if (!p || !dladdr1(p, &info, (void **)&sym, RTLD_DL_SYMENT) || !sym || !sym->st_size)
        return (struct fn_range){0, 0};
    return (struct fn_range){(uintptr_t)p, (uintptr_t)p + sym->st_size};
}

static void resolve(void)
{
    uint32_t count =
        atomic_load_explicit((_Atomic uint32_t *)&cw.hdr->module_count, memory_order_acquire);
    if (atomic_load_explicit(&resolved_for, memory_order_relaxed) == count)
        return;
    atomic_store_explicit(&resolved_for, count, memory_order_relaxed);
    if (!py_is_finalizing) {
        void *f = dlsym(RTLD_DEFAULT, "Py_IsFinalizing");
        *(void **)&py_is_finalizing = f ? f : dlsym(RTLD_DEFAULT, "_Py_IsFinalizing");
    }
    if (!perl_destruct_fn.lo)
        perl_destruct_fn = fn_range("perl_destruct");
    if (!ruby_run_node_fn.lo) {
        rb_vm_exec_fn = fn_range("rb_vm_exec");
        ruby_run_node_fn = fn_range("ruby_run_node");
    }
}

/* Whether a return address lies in f (it may be one past its last byte,
 * after a call that does not return). */
static int returns_into(struct fn_range f, uint64_t pc)
{
    return pc > f.lo && pc <= f.hi;
}

int cw_in_teardown(uint32_t stack)
{
    if (atomic_load_explicit(&ending, memory_order_relaxed))
        return 1;
    resolve();
    if (py_is_finalizing && py_is_finalizing())
        return 1;
    const uint64_t *pcs;
    int n = cw_stack_pcs(stack, &pcs), ruby_code = 0;
    for (int i = 0; i < n; i++) {
        if (returns_into(perl_destruct_fn, pcs[i]))
            return 1;
        ruby_code |= returns_into(rb_vm_exec_fn, pcs[i]);
        if (returns_into(ruby_run_node_fn, pcs[i]))
            return !ruby_code;
    }
    return 0;
}

CW_EXPORT void exit(int status)
{
    teardown_begins();
    void (*real)(int) = REAL(exit);
    if (real)
        real(status);
    syscall(SYS_exit_group, status); /* not reached: libc's exit does not return */
    __builtin_unreachable();
}

typedef int (*cw_main_fn)(int, char **, char **);
static cw_main_fn program_main;

static int main_then_teardown(int argc, char **argv, char **envp)
{
    int status = program_main(argc, argv, envp);
    teardown_begins();
    return status;
}

/* The executable's _start hands main to libc here: we hand over ours,
 * which calls it and notes when it returned. Nothing else changes. */
CW_EXPORT int __libc_start_main(cw_main_fn main, int argc, char **argv, void (*init)(void),
                                void (*fini)(void), void (*rtld_fini)(void), void *stack_end)
{
    program_main = main;
    return REAL(libc_start_main)(main_then_teardown, argc, argv, init, fini, rtld_fini, stack_end);
}

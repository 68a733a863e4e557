/*
 * test_symbolize.c - the offline symbolizer, run against this test process
 * itself: its module map is built the way the preload builds it
 * (dl_iterate_phdr), and addresses of known functions in this file and in
 * libc must come back with the right names, file and lines.
 */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../analyzer/symbolize.h"
#include "../common/elf_note.h"
#include "harness.h"

#ifdef __clang__
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noinline, noclone))
#endif
/* An empty asm after a call keeps it from becoming a tail call, which would
 * leave no return address inside the caller. */
#define NO_TAIL_CALL() __asm__ volatile("" ::: "memory")

#define MAX_MODS   512
#define MAX_FRAMES 16

struct mod_list {
    struct cw_module m[MAX_MODS];
    uint32_t n;
};

static void note_build_id(struct cw_module *m, const struct dl_phdr_info *info)
{
    uint32_t len;
    const uint8_t *id = cw_elf_note(info, "GNU", NT_GNU_BUILD_ID, &len);
    m->build_id_len = id ? (len < CW_BUILD_ID_MAX ? len : CW_BUILD_ID_MAX) : 0;
    if (id)
        memcpy(m->build_id, id, m->build_id_len);
}

static int add_module(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct mod_list *l = arg;
    if (l->n == MAX_MODS)
        return 1;
    struct cw_module *m = &l->m[l->n];
    memset(m, 0, sizeof *m);
    m->start = UINT64_MAX;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uint64_t s = info->dlpi_addr + ph->p_vaddr, e = s + ph->p_memsz;
        m->start = s < m->start ? s : m->start;
        m->end = e > m->end ? e : m->end;
    }
    if (m->end == 0)
        return 0;
    m->bias = info->dlpi_addr;
    m->ready = 1;
    if (info->dlpi_name && *info->dlpi_name) {
        snprintf(m->path, sizeof m->path, "%s", info->dlpi_name);
    } else {
        ssize_t n = readlink("/proc/self/exe", m->path, sizeof m->path - 1);
        cr_assert_gt(n, 0);
    }
    note_build_id(m, info);
    l->n++;
    return 0;
}

static struct mod_list *self_modules(void)
{
    static struct mod_list l;
    l.n = 0;
    dl_iterate_phdr(add_module, &l);
    cr_assert_gt(l.n, 1);
    return &l;
}

static const struct cw_module *module_of(const struct mod_list *l, const void *addr)
{
    for (uint32_t i = 0; i < l->n; i++)
        if ((uintptr_t)addr >= l->m[i].start && (uintptr_t)addr < l->m[i].end)
            return &l->m[i];
    cr_assert_fail("no module covers %p", addr);
    return NULL;
}

static const char *base_name(const char *path)
{
    const char *slash = path ? strrchr(path, '/') : NULL;
    return slash ? slash + 1 : path;
}

static int has_warning(struct cw_symbolizer *s, const char *a, const char *b)
{
    int found = 0;
    for (const char *const *w = cw_symbolizer_warnings(s); *w; w++)
        if (strstr(*w, a) && (!b || strstr(*w, b)))
            found++;
    return found;
}

/* ---- code with known locations ---- */

static const int target_line = __LINE__ + 1;
static NOINLINE int target_function(volatile int *p)
{
    return *p * 3 + 1;
}

/* Returns the address its caller resumes at. */
static NOINLINE void *caller_resume_address(void)
{
    return __builtin_return_address(0);
}

static NOINLINE void *plain_call_site(int *line)
{
    *line = __LINE__ + 1;
    void *ra = caller_resume_address();
    NO_TAIL_CALL();
    return ra;
}

static inline __attribute__((always_inline)) void *inlined_call_site(int *line)
{
    *line = __LINE__ + 1;
    void *ra = caller_resume_address();
    NO_TAIL_CALL();
    return ra;
}

static NOINLINE void *outer_function(int *inlined_line, int *call_line)
{
    *call_line = __LINE__ + 1;
    void *ra = inlined_call_site(inlined_line);
    NO_TAIL_CALL();
    return ra;
}

/* ---- tests ---- */

Test(symbolize, function_address)
{
    struct mod_list *l = self_modules();
    struct cw_symbolizer *s = cw_symbolizer_new();
    struct cw_sym_frame fr[MAX_FRAMES];
    uint64_t addr = (uintptr_t)target_function;
    int n = cw_symbolize(s, l->m, l->n, addr, 0, fr, MAX_FRAMES);
    cr_assert_eq(n, 1);
    cr_assert_eq(fr[0].address, addr);
    cr_assert_str_eq(fr[0].module, module_of(l, (void *)target_function)->path);
    cr_assert_str_eq(fr[0].function, "target_function");
    cr_assert_str_eq(base_name(fr[0].file), "test_symbolize.c");
    cr_assert(fr[0].file[0] == '/', "not absolute: %s", fr[0].file);
    cr_assert(fr[0].line >= target_line && fr[0].line <= target_line + 2, "line %d, defined at %d",
              fr[0].line, target_line);
    cr_assert_eq(fr[0].inlined, 0);
    cr_assert_null(cw_symbolizer_warnings(s)[0], "%s", cw_symbolizer_warnings(s)[0]);
    cw_symbolizer_free(s);
}

Test(symbolize, return_address_gives_call_line)
{
    struct mod_list *l = self_modules();
    struct cw_symbolizer *s = cw_symbolizer_new();
    int line = 0;
    uint64_t ra = (uintptr_t)plain_call_site(&line);
    struct cw_sym_frame fr[MAX_FRAMES];
    int n = cw_symbolize(s, l->m, l->n, ra, 1, fr, MAX_FRAMES);
    cr_assert_eq(n, 1);
    cr_assert_eq(fr[0].address, ra);
    cr_assert_str_eq(fr[0].function, "plain_call_site");
    cr_assert_str_eq(base_name(fr[0].file), "test_symbolize.c");
    cr_assert_eq(fr[0].line, line);
    cw_symbolizer_free(s);
}

Test(symbolize, inlined_frame_then_outer_function)
{
    struct mod_list *l = self_modules();
    struct cw_symbolizer *s = cw_symbolizer_new();
    int inlined_line = 0, call_line = 0;
    uint64_t ra = (uintptr_t)outer_function(&inlined_line, &call_line);
    struct cw_sym_frame fr[MAX_FRAMES];
    int n = cw_symbolize(s, l->m, l->n, ra, 1, fr, MAX_FRAMES);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(fr[0].function, "inlined_call_site");
    cr_assert_eq(fr[0].inlined, 1);
    cr_assert_eq(fr[0].line, inlined_line);
    cr_assert_str_eq(base_name(fr[0].file), "test_symbolize.c");
    cr_assert_str_eq(fr[1].function, "outer_function");
    cr_assert_eq(fr[1].inlined, 0);
    cr_assert_eq(fr[1].line, call_line);
    cr_assert_str_eq(base_name(fr[1].file), "test_symbolize.c");
    cr_assert_eq(fr[1].address, ra);
    cr_assert_eq(fr[1].module, fr[0].module);

    /* max truncates from the outside: one frame is the innermost. */
    struct cw_sym_frame one;
    cr_assert_eq(cw_symbolize(s, l->m, l->n, ra, 1, &one, 1), 1);
    cr_assert_str_eq(one.function, "inlined_call_site");
    cw_symbolizer_free(s);
}

Test(symbolize, libc_symbol_without_dwarf_function)
{
    struct mod_list *l = self_modules();
    struct cw_symbolizer *s = cw_symbolizer_new();
    void *fn = dlsym(RTLD_DEFAULT, "getpid");
    Dl_info info;
    cr_assert(fn && dladdr(fn, &info));
    cr_assert(strstr(info.dli_fname, "libc"), "%s", info.dli_fname);
    struct cw_sym_frame fr[MAX_FRAMES];
    int n = cw_symbolize(s, l->m, l->n, (uintptr_t)fn, 0, fr, MAX_FRAMES);
    cr_assert_eq(n, 1);
    cr_assert(fr[0].module && strstr(fr[0].module, "libc"), "%s", fr[0].module);
    cr_assert_str_eq(fr[0].function, "getpid");
    cw_symbolizer_free(s);
}

Test(symbolize, cxx_names_are_demangled)
{
    void *lib = dlopen("libstdc++.so.6", RTLD_NOW | RTLD_LOCAL);
    cr_assert_not_null(lib, "%s", dlerror());
    void *fn = dlsym(lib, "_ZNKSt9exception4whatEv");
    cr_assert_not_null(fn);
    struct mod_list *l = self_modules();
    struct cw_symbolizer *s = cw_symbolizer_new();
    struct cw_sym_frame fr[MAX_FRAMES];
    cr_assert_geq(cw_symbolize(s, l->m, l->n, (uintptr_t)fn, 0, fr, MAX_FRAMES), 1);
    cr_assert(strstr(fr[0].module, "libstdc++"), "%s", fr[0].module);
    cr_assert_str_eq(fr[0].function, "std::exception::what() const");
    cw_symbolizer_free(s);
}

Test(symbolize, same_file_at_another_bias)
{
    /* Another process mapped the same executable elsewhere. */
    struct mod_list *l = self_modules();
    struct cw_module moved = *module_of(l, (void *)target_function);
    const uint64_t shift = 0x100000000ULL;
    moved.bias += shift;
    moved.start += shift;
    moved.end += shift;
    struct cw_symbolizer *s = cw_symbolizer_new();
    struct cw_sym_frame here, there;
    cr_assert_eq(cw_symbolize(s, l->m, l->n, (uintptr_t)target_function, 0, &here, 1), 1);
    cr_assert_eq(cw_symbolize(s, &moved, 1, (uintptr_t)target_function + shift, 0, &there, 1), 1);
    cr_assert_str_eq(there.function, "target_function");
    /* Cached and interned: the very same strings. */
    cr_assert_eq(there.function, here.function);
    cr_assert_eq(there.file, here.file);
    cr_assert_eq(there.line, here.line);
    cr_assert_eq(there.address, (uintptr_t)target_function + shift);
    cw_symbolizer_free(s);
}

Test(symbolize, address_outside_every_module)
{
    struct mod_list *l = self_modules();
    struct cw_symbolizer *s = cw_symbolizer_new();
    struct cw_sym_frame fr[MAX_FRAMES];
    cr_assert_eq(cw_symbolize(s, l->m, l->n, 0x10, 1, fr, MAX_FRAMES), 1);
    cr_assert_eq(fr[0].address, 0x10);
    cr_assert_null(fr[0].module);
    cr_assert_null(fr[0].function);
    cr_assert_null(fr[0].file);
    cr_assert_eq(fr[0].line, 0);

    cr_assert_eq(cw_symbolize(s, NULL, 0, (uintptr_t)target_function, 1, fr, MAX_FRAMES), 1);
    cr_assert_null(fr[0].module);
    cr_assert_eq(cw_symbolize(s, l->m, l->n, (uintptr_t)target_function, 1, fr, 0), 0);
    cr_assert_eq(cw_symbolize(s, l->m, l->n, 0, 1, fr, MAX_FRAMES), 1);
    cw_symbolizer_free(s);
}

Test(symbolize, missing_file_warns_once)
{
    struct cw_module gone = {.bias = 0x7f0000000000ULL,
                             .start = 0x7f0000001000ULL,
                             .end = 0x7f0000009000ULL,
                             .build_id_len = 3,
                             .build_id = {1, 2, 3},
                             .path = "/nonexistent/closewatch-test/libgone.so"};
    struct cw_symbolizer *s = cw_symbolizer_new();
    struct cw_sym_frame fr[MAX_FRAMES];
    for (uint64_t a = gone.start + 1; a < gone.start + 0x40; a += 8) {
        cr_assert_eq(cw_symbolize(s, &gone, 1, a, 1, fr, MAX_FRAMES), 1);
        cr_assert_str_eq(fr[0].module, gone.path);
        cr_assert_null(fr[0].function);
        cr_assert_null(fr[0].file);
    }
    cr_assert_eq(has_warning(s, gone.path, NULL), 1);
    cr_assert_null(cw_symbolizer_warnings(s)[1]);
    cw_symbolizer_free(s);
}

Test(symbolize, build_id_mismatch_warns_and_still_names)
{
    struct mod_list *l = self_modules();
    struct cw_module changed = *module_of(l, (void *)target_function);
    cr_assert_gt(changed.build_id_len, 0, "test binary has no build-id");
    changed.build_id[0] ^= 0xff;
    struct cw_symbolizer *s = cw_symbolizer_new();
    struct cw_sym_frame fr[MAX_FRAMES];
    cr_assert_eq(cw_symbolize(s, &changed, 1, (uintptr_t)target_function, 0, fr, MAX_FRAMES), 1);
    cr_assert_str_eq(fr[0].function, "target_function");
    cr_assert_eq(has_warning(s, changed.path, "build-id"), 1);
    cw_symbolize(s, &changed, 1, (uintptr_t)target_function + 1, 0, fr, MAX_FRAMES);
    cr_assert_eq(has_warning(s, changed.path, "build-id"), 1);

    /* A recorded length beyond the field is garbage, not a crash. */
    struct cw_module garbage = changed;
    garbage.build_id_len = UINT32_MAX;
    memset(garbage.path, 'x', sizeof garbage.path); /* and no NUL */
    cr_assert_eq(cw_symbolize(s, &garbage, 1, (uintptr_t)target_function, 1, fr, MAX_FRAMES), 1);
    cr_assert_not_null(fr[0].module);
    cw_symbolizer_free(s);
}

Test(symbolize, vdso_is_named_without_warning)
{
    struct cw_module vdso = {.bias = 0x7ffff7fc1000ULL,
                             .start = 0x7ffff7fc1000ULL,
                             .end = 0x7ffff7fc3000ULL,
                             .path = "linux-vdso.so.1"};
    struct cw_symbolizer *s = cw_symbolizer_new();
    struct cw_sym_frame fr[MAX_FRAMES];
    cr_assert_eq(cw_symbolize(s, &vdso, 1, vdso.start + 0x10, 1, fr, MAX_FRAMES), 1);
    cr_assert_str_eq(fr[0].module, "linux-vdso.so.1");
    cr_assert_null(cw_symbolizer_warnings(s)[0], "%s", cw_symbolizer_warnings(s)[0]);
    cw_symbolizer_free(s);
}

Test(symbolize, not_an_elf_file_warns)
{
    struct cw_module odd = {.start = 0x1000, .end = 0x2000, .path = "/proc/self/status"};
    struct cw_symbolizer *s = cw_symbolizer_new();
    struct cw_sym_frame fr[MAX_FRAMES];
    cr_assert_eq(cw_symbolize(s, &odd, 1, 0x1800, 1, fr, MAX_FRAMES), 1);
    cr_assert_str_eq(fr[0].module, "/proc/self/status");
    cr_assert_null(fr[0].function);
    cr_assert_eq(has_warning(s, "/proc/self/status", NULL), 1);
    cw_symbolizer_free(s);
}

Test(symbolize, every_address_of_the_text_resolves_to_its_module)
{
    struct mod_list *l = self_modules();
    const struct cw_module *self = module_of(l, (void *)target_function);
    const struct cw_module *libc = module_of(l, dlsym(RTLD_DEFAULT, "getpid"));
    struct cw_symbolizer *s = cw_symbolizer_new();
    struct cw_sym_frame fr[MAX_FRAMES];
    const struct cw_module *mods[] = {self, libc};
    for (int k = 0; k < 2; k++) {
        uint64_t step = (mods[k]->end - mods[k]->start) / 5000 + 1;
        for (uint64_t a = mods[k]->start + 1; a < mods[k]->end; a += step) {
            int n = cw_symbolize(s, l->m, l->n, a, 1, fr, MAX_FRAMES);
            cr_assert(n >= 1 && n <= MAX_FRAMES);
            cr_assert_str_eq(fr[n - 1].module, mods[k]->path);
            cr_assert_eq(fr[n - 1].inlined, 0);
        }
    }
    cw_symbolizer_free(s);
}

Test(symbolize, relative_source_paths_are_made_absolute)
{
    /* The analyzer objects are compiled from build/aobj as ../../analyzer/x.c. */
    struct mod_list *l = self_modules();
    struct cw_symbolizer *s = cw_symbolizer_new();
    struct cw_sym_frame fr[MAX_FRAMES];
    int n = cw_symbolize(s, l->m, l->n, (uintptr_t)cw_sym_is_own_module, 0, fr, MAX_FRAMES);
    cr_assert_str_eq(fr[n - 1].function, "cw_sym_is_own_module");
    cr_assert_not_null(fr[0].file);
    cr_assert(fr[0].file[0] == '/', "%s", fr[0].file);
    cr_assert_null(strstr(fr[0].file, "/../"), "%s", fr[0].file);
    cr_assert_null(strstr(fr[0].file, "/./"), "%s", fr[0].file);
    size_t len = strlen(fr[0].file), tail = strlen("/analyzer/symbolize.c");
    cr_assert(len > tail && !strcmp(fr[0].file + len - tail, "/analyzer/symbolize.c"), "%s",
              fr[0].file);
    cw_symbolizer_free(s);
}

Test(symbolize, deleted_executable_is_read_from_its_live_path)
{
    /* /proc/PID/exe of a replaced binary reads "PATH (deleted)". */
    struct mod_list *l = self_modules();
    struct cw_module exe = *module_of(l, (void *)target_function);
    size_t len = strlen(exe.path);
    cr_assert_lt(len + sizeof " (deleted)", sizeof exe.path);
    strcat(exe.path, " (deleted)");
    struct cw_symbolizer *s = cw_symbolizer_new();
    struct cw_sym_frame fr[MAX_FRAMES];
    cr_assert_eq(cw_symbolize(s, &exe, 1, (uintptr_t)target_function, 0, fr, MAX_FRAMES), 1);
    cr_assert_str_eq(fr[0].module, exe.path);
    cr_assert_str_eq(fr[0].function, "target_function");
    cr_assert_null(cw_symbolizer_warnings(s)[0], "%s", cw_symbolizer_warnings(s)[0]);
    cw_symbolizer_free(s);
}

Test(symbolize, own_module)
{
    cr_assert(cw_sym_is_own_module("/work/build/libclosewatch.so"));
    cr_assert(cw_sym_is_own_module("libclosewatch.so"));
    cr_assert(cw_sym_is_own_module("/usr/local/lib/libclosewatch.so.1"));
    cr_assert_not(cw_sym_is_own_module("/usr/lib/libc.so.6"));
    cr_assert_not(cw_sym_is_own_module("/opt/libclosewatch/libfoo.so"));
    cr_assert_not(cw_sym_is_own_module(""));
    cr_assert_not(cw_sym_is_own_module(NULL));
}

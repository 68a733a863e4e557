/*
 * recorder_util.h - what test_ring.c and test_preload.c share on top of
 * harness.h: reading a whole ring's history into an array, a control pipe
 * that tells a fixture when it may go on, reading the fixture's "key value"
 * lines, decoding event arguments, and symbolizing a recorded address
 * against the module table with libdwfl.
 *
 * Everything is static inline so each test file takes only what it uses.
 */
#ifndef CW_TEST_RECORDER_UTIL_H
#define CW_TEST_RECORDER_UTIL_H

#include <criterion/criterion.h>
#include <elfutils/libdwfl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"

#define FIXTURE(name) h_path("fixtures/" name)

/*
 * The test's private ring directory. Tests declare .fini = drop_test_dir so
 * it is removed also when an assertion ends the test early; set
 * CW_TEST_KEEP=1 to keep it for `closewatch dump`.
 */
static char *test_ring_dir;

static inline char *test_dir(const char *tag)
{
    test_ring_dir = h_mkdtemp(tag);
    return test_ring_dir;
}

static inline void drop_test_dir(void)
{
    const char *keep = getenv("CW_TEST_KEEP");
    if (!test_ring_dir)
        return;
    if (keep && *keep == '1')
        cr_log_warn("rings kept in %s", test_ring_dir);
    else
        h_rmdir(test_ring_dir);
    free(test_ring_dir);
    test_ring_dir = NULL;
}

/* ---- the event history of a ring ---------------------------------------- */

struct ev_list {
    struct cw_event *v;
    size_t n;
    uint64_t torn, overwritten;
};

static inline void ev_collect(const struct cw_ring *r, struct ev_list *out)
{
    struct cw_ring_iter it;
    cw_ring_iter_begin(r, &it);
    size_t cap = (size_t)(it.end - it.next) + 1;
    out->v = calloc(cap, sizeof *out->v);
    cr_assert_not_null(out->v);
    out->n = 0;
    while (out->n < cap && cw_ring_iter_next(r, &it, &out->v[out->n]))
        out->n++;
    out->torn = it.torn;
    out->overwritten = it.overwritten;
}

static inline void ev_free(struct ev_list *l)
{
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

/* CW_EV_OPEN's arg0, decoded (shm_layout.h). */
static inline int ev_origin(const struct cw_event *e)
{
    return cw_open_arg_origin(e->arg0);
}
static inline int ev_family(const struct cw_event *e)
{
    return cw_open_arg_family(e->arg0);
}
static inline int ev_socktype(const struct cw_event *e)
{
    return cw_open_arg_type(e->arg0);
}

#define ANY_FD INT_MIN

/* Number of events of `type` on fd (or on any fd). */
static inline int ev_count(const struct ev_list *l, int type, int fd)
{
    int n = 0;
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].type == type && (fd == ANY_FD || l->v[i].fd == fd))
            n++;
    return n;
}

/* The last event of `type` on fd (or ANY_FD), or NULL. */
static inline const struct cw_event *ev_last(const struct ev_list *l, int type, int fd)
{
    for (size_t i = l->n; i-- > 0;)
        if (l->v[i].type == type && (fd == ANY_FD || l->v[i].fd == fd))
            return &l->v[i];
    return NULL;
}

/* The first event of `type` about socket sid, or NULL. */
static inline const struct cw_event *ev_of_sid(const struct ev_list *l, int type, uint64_t sid)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->v[i].type == type && l->v[i].sid == sid)
            return &l->v[i];
    return NULL;
}

/* The live header of a mapped ring (r->hdr is a copy taken at open). */
static inline const struct cw_header *live_hdr(const struct cw_ring *r)
{
    return (const struct cw_header *)r->base;
}

static inline struct cw_fd_entry fd_entry(const struct cw_ring *r, int fd)
{
    struct cw_fd_entry e;
    cr_assert(cw_ring_fd(r, (uint32_t)fd, &e), "fd %d outside the fd table", fd);
    return e;
}

static inline int entry_open(const struct cw_fd_entry *e)
{
    return (e->sid & CW_SID_OPEN) != 0;
}
static inline uint64_t entry_sid(const struct cw_fd_entry *e)
{
    return e->sid & ~CW_SID_OPEN;
}

/* ---- talking to fixtures ------------------------------------------------- */

/* Runs a fixture under the preload with stdout captured. */
static inline struct h_proc spawn_fixture(char *const argv[], char *const env[], const char *dir)
{
    return h_spawn(argv, env, 1, dir, 1);
}

/* Reads one line, failing the test if there is none within 10 s. */
static inline void read_line(struct h_proc *p, char *buf, size_t len)
{
    cr_assert(h_read_line(p, buf, len, 10000), "fixture pid %d printed nothing (or exited)",
              (int)p->pid);
}

/* Reads a line "key N" and returns N, failing on any other line. */
static inline long read_value(struct h_proc *p, const char *key)
{
    char line[256], word[64];
    long v;
    read_line(p, line, sizeof line);
    cr_assert(sscanf(line, "%63s %ld", word, &v) == 2 && !strcmp(word, key),
              "expected \"%s N\" from the fixture, got \"%s\"", key, line);
    return v;
}

/* Reads a line and checks it is exactly `want`. */
static inline void expect_line(struct h_proc *p, const char *want)
{
    char line[256];
    read_line(p, line, sizeof line);
    cr_assert_str_eq(line, want, "expected \"%s\" from the fixture, got \"%s\"", want, line);
}

static inline void wait_exit_ok(struct h_proc *p, int timeout_ms)
{
    int status = h_wait(p, timeout_ms);
    cr_assert_neq(status, -1, "fixture pid %d did not exit within %d ms", (int)p->pid, timeout_ms);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fixture pid %d failed: status 0x%x",
              (int)p->pid, status);
}

/* Opens the ring of pid in dir and checks it is the only one it has. */
static inline void open_ring(struct cw_ring *r, const char *dir, pid_t pid)
{
    char paths[4][512];
    int n = h_rings(dir, pid, paths, 4);
    cr_assert_eq(n, 1, "expected one ring for pid %d in %s, found %d", (int)pid, dir, n);
    h_open_ring(r, dir, pid);
    cr_assert_eq(r->hdr.pid, pid);
}

/* ---- modules and symbols --------------------------------------------------- */

/* The module entry whose file is `path` (compared after realpath). */
static inline int find_module(const struct cw_ring *r, const char *path, struct cw_module *out)
{
    char want[PATH_MAX], have[PATH_MAX];
    if (!realpath(path, want))
        return 0;
    for (uint32_t i = 0; i < cw_ring_module_count(r); i++)
        if (cw_ring_module(r, i, out) && realpath(out->path, have) && !strcmp(have, want))
            return 1;
    return 0;
}

static inline int in_module(const struct cw_module *m, uint64_t pc)
{
    return pc >= m->start && pc < m->end;
}

/*
 * Name of the function holding return address pc in module m, from the
 * module's own symbol table ("" if unknown). pc - 1 is looked up: a return
 * address may point just past the end of the calling function.
 */
static inline void symbolize(const struct cw_module *m, uint64_t pc, char *out, size_t len)
{
    static char *debuginfo_path;
    static const Dwfl_Callbacks callbacks = {
        .find_elf = dwfl_build_id_find_elf,
        .find_debuginfo = dwfl_standard_find_debuginfo,
        .section_address = dwfl_offline_section_address,
        .debuginfo_path = &debuginfo_path,
    };
    out[0] = 0;
    Dwfl *dwfl = dwfl_begin(&callbacks);
    if (!dwfl)
        return;
    Dwfl_Module *mod = dwfl_report_elf(dwfl, m->path, m->path, -1, m->bias, false);
    dwfl_report_end(dwfl, NULL, NULL);
    const char *name = mod ? dwfl_module_addrname(mod, pc - 1) : NULL;
    snprintf(out, len, "%s", name ? name : "");
    dwfl_end(dwfl);
}

#endif

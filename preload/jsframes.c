/*
 * jsframes.c - JavaScript frames for the sockets a Node program creates and
 * accepts, handed over by closewatch-node.js.
 *
 * No user JavaScript is on the native stack when libuv calls accept() or
 * connect(): a loop iteration or a nextTick runs them. So the JS side
 * captures the frames where they mean something (the server's creation,
 * the call that made a client connection) and hands them here, through a
 * Node-API module this library also is: `process.dlopen` of
 * libclosewatch.so finds napi_register_module_v1, which exports
 *
 *   prepare(version, frames) -> id   frames: "function\tfile\tline\n"...,
 *                                     innermost first; id 0: not recorded
 *   attach(fd, id)                   the socket at fd was opened for them
 *
 * prepare interns the frames as code records and a language stack
 * (position = the line itself: V8 gives lines, not offsets, so there is no
 * line table; lang_frames.c reads it back). attach makes the socket's open
 * stack its recorded native stack with that language stack beneath it.
 *
 * Node-API is resolved with dlsym at the first call: the node executable
 * exports it; in any other program nothing here ever runs, and the library
 * needs none of its symbols to load.
 */
#include "cw.h"
#include "../common/hash.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct napi_env__ *napi_env;
typedef struct napi_value__ *napi_value;
typedef struct napi_callback_info__ *napi_callback_info;
typedef int napi_status; /* napi_ok = 0 */
typedef napi_value (*napi_callback)(napi_env, napi_callback_info);

static struct {
    napi_status (*create_function)(napi_env, const char *, size_t, napi_callback, void *,
                                   napi_value *);
    napi_status (*set_named_property)(napi_env, napi_value, const char *, napi_value);
    napi_status (*get_cb_info)(napi_env, napi_callback_info, size_t *, napi_value *, napi_value *,
                               void **);
    napi_status (*get_value_int32)(napi_env, napi_value, int32_t *);
    napi_status (*get_value_string_utf8)(napi_env, napi_value, char *, size_t, size_t *);
    napi_status (*create_uint32)(napi_env, uint32_t, napi_value *);
} napi;

static int napi_resolve(void)
{
    *(void **)&napi.create_function = dlsym(RTLD_DEFAULT, "napi_create_function");
    *(void **)&napi.set_named_property = dlsym(RTLD_DEFAULT, "napi_set_named_property");
    *(void **)&napi.get_cb_info = dlsym(RTLD_DEFAULT, "napi_get_cb_info");
    *(void **)&napi.get_value_int32 = dlsym(RTLD_DEFAULT, "napi_get_value_int32");
    *(void **)&napi.get_value_string_utf8 = dlsym(RTLD_DEFAULT, "napi_get_value_string_utf8");
    *(void **)&napi.create_uint32 = dlsym(RTLD_DEFAULT, "napi_create_uint32");
    return napi.create_function && napi.set_named_property && napi.get_cb_info &&
           napi.get_value_int32 && napi.get_value_string_utf8 && napi.create_uint32;
}

/* What the runtime record says: published into each ring a prepare sees. */
static char js_version[32];
static _Atomic(void *) js_ring;

static void publish_runtime(void)
{
    struct cw_header *h = cw.hdr;
    if (atomic_load_explicit(&js_ring, memory_order_relaxed) == (void *)h)
        return;
    struct cw_runtime *rt = &h->runtimes[CW_LANG_JAVASCRIPT];
    snprintf(rt->name, sizeof rt->name, "Node %.26s", js_version);
    rt->eval_lo = rt->eval_hi = 0; /* frames captured elsewhere: they follow the native stack */
    atomic_store_explicit((_Atomic uint32_t *)&rt->status, CW_RT_WALKED, memory_order_release);
    atomic_store_explicit(&js_ring, (void *)h, memory_order_relaxed);
}

struct js_fill {
    const char *name, *file;
    int name_len, file_len;
};

static int js_code_fill(struct cw_code *c, void *ctx)
{
    const struct js_fill *f = ctx;
    if (!cw_blob_str(f->name, f->name_len, &c->name_off, &c->name_len) ||
        !cw_blob_str(f->file, f->file_len, &c->file_off, &c->file_len))
        return 0;
    c->lang = CW_LANG_JAVASCRIPT;
    return 1;
}

static uint64_t fnv(const char *s, int n)
{
    uint64_t h = CW_HASH_SEED;
    for (int i = 0; i < n; i++)
        h = cw_hash_step(h, (uint8_t)s[i]);
    return h;
}

/* One "function\tfile\tline" line's code record and line. */
static int js_frame(const char *s, const char *end, struct cw_lang_frame *out)
{
    const char *t1 = memchr(s, '\t', (size_t)(end - s));
    const char *t2 = t1 ? memchr(t1 + 1, '\t', (size_t)(end - t1 - 1)) : NULL;
    if (!t2)
        return 0;
    struct js_fill f = {s, t1 + 1, (int)(t1 - s), (int)(t2 - t1 - 1)};
    long line = strtol(t2 + 1, NULL, 10);
    uint64_t key[4] = {fnv(f.name, f.name_len), fnv(f.file, f.file_len),
                       (uint64_t)f.name_len << 32 | (uint32_t)f.file_len, CW_LANG_JAVASCRIPT};
    out->code = cw_code_intern(key, js_code_fill, &f);
    out->pos = (uint32_t)(line > 0 ? line : 0) & CW_LF_POS_MASK;
    return 1;
}

#define JS_TEXT_MAX 16384

static napi_value js_prepare(napi_env env, napi_callback_info info)
{
    size_t argc = 2;
    napi_value argv[2], ret = NULL;
    static char text[JS_TEXT_MAX]; /* JavaScript runs on one thread per isolate */
    size_t len = 0;
    uint32_t id = 0;
    if (napi.get_cb_info(env, info, &argc, argv, NULL, NULL) || argc < 2 ||
        napi.get_value_string_utf8(env, argv[0], js_version, sizeof js_version, &len) ||
        napi.get_value_string_utf8(env, argv[1], text, sizeof text, &len))
        return NULL;
    if (cw_enter()) {
        publish_runtime();
        struct cw_lang_frame frames[CW_LANG_DEPTH];
        int n = 0, truncated = 0;
        const char *s = text, *end = text + len;
        while (s < end) {
            const char *nl = memchr(s, '\n', (size_t)(end - s));
            const char *e = nl ? nl : end;
            if (n == CW_LANG_DEPTH) {
                truncated = 1;
                break;
            }
            n += js_frame(s, e, &frames[n]);
            s = e + 1;
        }
        if (n) {
            frames[n - 1].pos |= CW_LF_ENTRY;
            id = cw_lang_intern(CW_LANG_JAVASCRIPT, frames, n, truncated);
        }
        cw_leave();
    }
    napi.create_uint32(env, id, &ret);
    return ret;
}

static napi_value js_attach(napi_env env, napi_callback_info info)
{
    size_t argc = 2;
    napi_value argv[2];
    int32_t fd = -1, id = 0;
    if (napi.get_cb_info(env, info, &argc, argv, NULL, NULL) || argc < 2 ||
        napi.get_value_int32(env, argv[0], &fd) || napi.get_value_int32(env, argv[1], &id) ||
        id <= 0 || !cw_enter())
        return NULL;
    struct cw_fd_entry *e = cw_fd(fd);
    if (e && (__atomic_load_n(&e->sid, __ATOMIC_ACQUIRE) & CW_SID_OPEN) &&
        (uint32_t)id <= cw.hdr->lang_stack_cap) {
        uint32_t stack = cw_stack_with_lang(e->open_stack, (uint32_t)id);
        if (stack)
            e->open_stack = stack;
    }
    cw_leave();
    return NULL;
}

CW_EXPORT napi_value napi_register_module_v1(napi_env env, napi_value exports)
{
    static const struct {
        const char *name;
        napi_callback fn;
    } fns[] = {{"prepare", js_prepare}, {"attach", js_attach}};
    if (!napi_resolve())
        return exports;
    for (size_t i = 0; i < sizeof fns / sizeof *fns; i++) {
        napi_value f;
        if (!napi.create_function(env, fns[i].name, (size_t)-1, fns[i].fn, NULL, &f))
            napi.set_named_property(env, exports, fns[i].name, f);
    }
    return exports;
}

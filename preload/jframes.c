/*
 * jframes.c - Java frames (HotSpot) in the stacks recorded on Java threads.
 *
 * Finding the JVM from inside the process: libjvm is loaded after our
 * constructor (by the `java` launcher's libjli, or by a program that makes
 * a VM itself), and the VM is made later still. The module map (stacks.c),
 * filled when recording starts and refreshed after every dlopen, tells us
 * when libjvm is there; the stacks recorded from then on look for the VM
 * (JNI_GetCreatedJavaVMs of that libjvm) until there is one. No agent, no
 * JAVA_TOOL_OPTIONS (the JVM prints "Picked up ..." on the program's
 * stderr), never an attached thread of ours.
 *
 * Which threads: only a JavaThread in state _thread_in_native (Java code
 * that called a JNI method such as sun.nio.ch.Net.accept, which called the
 * socket function we hooked) may call the VM the way JNI code does. The
 * thread is found through JavaVM.GetEnv (the JNIEnv lives in the thread's
 * JavaThread, which GetEnv finds without a state transition), its state
 * read at JavaThread::_thread_state, an offset taken from libjvm's exported
 * gHotSpotVMStructs table (never hard-coded; the value of _thread_in_native
 * from gHotSpotVMIntConstants). Every other thread (the JVM's own: VM,
 * GC, compiler, Attach Listener; threads the VM never saw) gets its native
 * stack only.
 *
 * The walk: AsyncGetCallTrace (libjvm's export, as async-profiler uses it)
 * from the thread's last Java frame (ours is in native code: its frame
 * anchor is set and walkable, no signal context is needed), falling back
 * to JVMTI GetStackTrace on the current thread when ASGCT names a frame
 * without a jmethodID (one never made: ASGCT only finds ids, GetStackTrace
 * makes them, so a path pays the fallback once) or fails. ASGCT needs some
 * environment to have ClassLoad events on: ours, with a callback that does
 * nothing. Measured (scripts/bench, "java event", SocketChannel.open +
 * close 10 and 30 frames deep, OpenJDK 17 here): Java frames added 3.7 and
 * 5.2 us an event with ASGCT, 5.4 and 8.0 us with GetStackTrace alone
 * (which builds a vframe object per frame through java_sender, 10% of the
 * whole program's time in a profile); ASGCT's stream walk with its safety
 * checks costs about 60 ns a frame.
 *
 * Names: each jmethodID is interned once as a code record holding the
 * method's qualified name, its source file as a path derived from the
 * package (java/net/ServerSocket.java: class files name the file without
 * its directory) and its line number table as (bci, line) pairs, written
 * at the first capture, so a class unloaded since, or a process killed,
 * still has them. HotSpot never reuses a jmethodID (the ids of an unloaded
 * class stay allocated, pointing at nothing), so the id alone is the key.
 * A frame's position is its bci; lang_frames.c turns it into a line.
 *
 * Merging: the interpreter and the JIT's code live in the code cache
 * (CodeCache::_low_bound.._high_bound, from the same table), published as
 * the runtime's evaluation range: all the Java frames stand at the first
 * code-cache frame of the native stack, just above the JNI method that
 * called the socket function.
 *
 * Tested with OpenJDK 17 (Debian) and Temurin 25; any HotSpot whose tables
 * lack what we read gets native frames and a reason in the ring.
 */
#include "cw.h"
#include "../common/hash.h"

#include <link.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* The few JNI/JVMTI entry points we call, by their index in the function
 * tables (jni.h; jvmti.h numbers them from 1: "47 : Deallocate" is slot
 * 46), so the library builds without a JDK; tests/test_lang_java.c uses
 * every one of them. */
enum {
    JNI_OK_ = 0,
    JNI_VERSION_1_6_ = 0x00010006,
    JVMTI_VERSION_1_2_ = 0x30010200,
    VM_GET_ENV = 6,            /* JNIInvokeInterface_.GetEnv */
    ENV_DELETE_LOCAL_REF = 23, /* JNINativeInterface_.DeleteLocalRef */
    TI_DEALLOCATE = 47 - 1,    /* jvmtiInterface_1_, from here on */
    TI_GET_CLASS_SIGNATURE = 48 - 1,
    TI_GET_SOURCE_FILE_NAME = 50 - 1,
    TI_GET_METHOD_NAME = 64 - 1,
    TI_GET_METHOD_DECLARING_CLASS = 65 - 1,
    TI_GET_LINE_NUMBER_TABLE = 70 - 1,
    TI_GET_STACK_TRACE = 104 - 1,
    TI_ADD_CAPABILITIES = 142 - 1,
    TI_SET_EVENT_NOTIFICATION_MODE = 2 - 1,
    TI_SET_EVENT_CALLBACKS = 122 - 1,
    JVMTI_ENABLE_ = 1,
    EV_CLASS_LOAD = 55, /* jvmtiEventCallbacks has one slot per event from 50 */
    EV_FIRST = 50,
    /* jvmtiCapabilities, first word: can_get_source_file_name (bit 11),
     * can_get_line_numbers (bit 12): "always" capabilities in HotSpot,
     * which cost nothing. */
    CAN_SOURCE_AND_LINES = 1 << 11 | 1 << 12,
};

typedef void **jfn; /* a JNI/JVMTI object: a pointer to its function table */
struct frame_info {
    void *method; /* jmethodID */
    int64_t location;
};
struct asgct_frame {
    int32_t lineno; /* the bci; negative: a native method, or an error */
    void *method;   /* jmethodID, NULL if none was made */
};
struct asgct_trace {
    void *env;
    int32_t num_frames; /* negative: an error code */
    struct asgct_frame *frames;
};
struct line_entry {
    int64_t start;
    int32_t line;
};

#define JFN(obj, slot) ((*(void ***)(obj))[slot])

/* J_NONE: no JVM (yet: a libjvm loaded later makes it J_LOOK); J_OFF: never
 * (a fork child, a VM we cannot walk). */
enum { J_NONE, J_OFF, J_LOOK, J_BUSY, J_WALK };

static struct {
    _Atomic int state;
    int (*get_vms)(void **, int, int *);
    void (*agct)(struct asgct_trace *, int, void *); /* AsyncGetCallTrace, NULL: not used */
    void *vm;                                        /* JavaVM* */
    void *jvmti;                                     /* jvmtiEnv* */
    long env_off;                                    /* JavaThread* = JNIEnv* - env_off */
    long state_off, osthread_off, pthread_off;
    int in_native;          /* the value of _thread_in_native */
    _Atomic uint32_t early; /* stacks recorded before the JVM was found */
    struct cw_runtime rt;
    _Atomic(void *) ring;  /* the ring rt was last written to */
    _Atomic uint32_t told; /* early as last written */
} jv;

/* ---- noticing the JVM ---------------------------------------------------- */

/* A fork child of a JVM (made by native code: Java's own children exec at
 * once) has one thread of it: a call into the VM could wait forever for
 * the others (a safepoint, a lock one of them held), so it records native
 * stacks only. */
void cw_jframes_after_fork(void)
{
    atomic_store(&jv.state, J_OFF);
}

/* libjvm's dynamic symbol table, found when the module map sees it: its
 * exports are looked up there, not with dlsym, whose failure (an older or
 * another VM without one of them) mallocs its message in the program's
 * malloc, which a hook must not call. */
static struct {
    uintptr_t base;
    const ElfW(Sym) * syms;
    const char *strs;
    const uint32_t *gnu_hash;
} elf;

/* A d_ptr of the dynamic section: glibc relocates them in place once the
 * object is mapped; before that, an offset from its base. */
static uintptr_t dyn_ptr(uintptr_t base, uintptr_t p)
{
    return p < base ? base + p : p;
}

/* A program that is no Java launcher may dlopen libjvm and make a VM
 * itself (jsvc, an embedding application): the module map (stacks.c) tells
 * us when libjvm appears, before the stack that first runs through it is
 * walked for Java frames, with the launcher's libjvm at the start. */
void cw_jframes_module(const char *path, const struct dl_phdr_info *info)
{
    const char *slash = strrchr(path, '/');
    int expect = J_NONE;
    if (strcmp(slash ? slash + 1 : path, "libjvm.so") ||
        atomic_load_explicit(&jv.state, memory_order_relaxed) != J_NONE)
        return;
    /* One refresh of the map at a time (stacks.c): no other writer. */
    elf.base = info->dlpi_addr;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        if (info->dlpi_phdr[i].p_type != PT_DYNAMIC)
            continue;
        for (const ElfW(Dyn) *d = (const void *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
             d->d_tag != DT_NULL; d++) {
            uintptr_t p = dyn_ptr(elf.base, d->d_un.d_ptr);
            if (d->d_tag == DT_SYMTAB)
                elf.syms = (const void *)p;
            else if (d->d_tag == DT_STRTAB)
                elf.strs = (const void *)p;
            else if (d->d_tag == DT_GNU_HASH)
                elf.gnu_hash = (const void *)p;
        }
    }
    atomic_compare_exchange_strong(&jv.state, &expect, J_LOOK);
}

/* The address of libjvm's export `name` (DT_GNU_HASH lookup), NULL. */
static void *jvm_sym(const char *name)
{
    const uint32_t *ht = elf.gnu_hash;
    if (!ht || !elf.syms || !elf.strs || !ht[0])
        return NULL;
    uint32_t nbuckets = ht[0], symoffset = ht[1], bloom_words = ht[2];
    const uint32_t *buckets = (const uint32_t *)((const ElfW(Addr) *)(ht + 4) + bloom_words);
    const uint32_t *chain = buckets + nbuckets;
    uint32_t h = 5381;
    for (const unsigned char *c = (const unsigned char *)name; *c; c++)
        h = h * 33 + *c;
    for (uint32_t i = buckets[h % nbuckets]; i >= symoffset; i++) {
        uint32_t h2 = chain[i - symoffset];
        const ElfW(Sym) *sym = &elf.syms[i];
        if ((h | 1) == (h2 | 1) && sym->st_shndx != SHN_UNDEF &&
            !strcmp(elf.strs + sym->st_name, name))
            return (void *)(elf.base + sym->st_value);
        if (h2 & 1)
            break;
    }
    return NULL;
}

/* ---- finding the VM ------------------------------------------------------ */

/* libjvm's exported tables (hotspot/share/runtime/vmStructs.cpp). */
static struct {
    const char *entries; /* gHotSpotVMStructs */
    long stride, type_off, field_off, offset_off, address_off;
    const char *ints; /* gHotSpotVMIntConstants */
    long int_stride, int_name_off, int_value_off;
} vs;

static int sym_long(const char *name, long *out)
{
    const long *p = jvm_sym(name);
    return p ? (*out = *p, 1) : 0;
}

static int tables_from(void)
{
    const char *const *e = jvm_sym("gHotSpotVMStructs");
    const char *const *i = jvm_sym("gHotSpotVMIntConstants");
    if (!e || !i || !*e || !*i)
        return 0;
    vs.entries = *e;
    vs.ints = *i;
    return sym_long("gHotSpotVMStructEntryArrayStride", &vs.stride) &&
           sym_long("gHotSpotVMStructEntryTypeNameOffset", &vs.type_off) &&
           sym_long("gHotSpotVMStructEntryFieldNameOffset", &vs.field_off) &&
           sym_long("gHotSpotVMStructEntryOffsetOffset", &vs.offset_off) &&
           sym_long("gHotSpotVMStructEntryAddressOffset", &vs.address_off) &&
           sym_long("gHotSpotVMIntConstantEntryArrayStride", &vs.int_stride) &&
           sym_long("gHotSpotVMIntConstantEntryNameOffset", &vs.int_name_off) &&
           sym_long("gHotSpotVMIntConstantEntryValueOffset", &vs.int_value_off);
}

/* The entry type::field: its offset (address 0) or its address (static). */
static int vm_field(const char *type, const char *field, long *offset, void **address)
{
    for (const char *e = vs.entries;; e += vs.stride) {
        const char *t = *(const char *const *)(e + vs.type_off);
        const char *f = *(const char *const *)(e + vs.field_off);
        if (!t)
            return 0;
        if (f && !strcmp(t, type) && !strcmp(f, field)) {
            if (offset)
                *offset = *(const long *)(e + vs.offset_off);
            if (address)
                *address = *(void *const *)(e + vs.address_off);
            return 1;
        }
    }
}

static int vm_int(const char *name, int *out)
{
    for (const char *e = vs.ints;; e += vs.int_stride) {
        const char *n = *(const char *const *)(e + vs.int_name_off);
        if (!n)
            return 0;
        if (!strcmp(n, name)) {
            *out = *(const int32_t *)(e + vs.int_value_off);
            return 1;
        }
    }
}

static void unsupported(const char *why)
{
    if (!jv.rt.name[0]) /* before its tables told its version */
        snprintf(jv.rt.name, sizeof jv.rt.name, "Java (libjvm.so)");
    snprintf(jv.rt.reason, sizeof jv.rt.reason, "%s; native frames only", why);
    jv.rt.status = CW_RT_UNSUPPORTED;
}

/* What the tables say about this VM: the offsets, the code cache, the
 * version. 0 (and the reason in jv.rt) if they do not say it. */
static int read_tables(void)
{
    void *lo = NULL, *hi = NULL, *release = NULL, *major = NULL, *minor = NULL, *sec = NULL;
    vm_field("Abstract_VM_Version", "_s_vm_release", NULL, &release);
    vm_field("Abstract_VM_Version", "_vm_major_version", NULL, &major);
    vm_field("Abstract_VM_Version", "_vm_minor_version", NULL, &minor);
    vm_field("Abstract_VM_Version", "_vm_security_version", NULL, &sec);
    snprintf(jv.rt.name, sizeof jv.rt.name, "Java %s",
             release && *(const char *const *)release ? *(const char *const *)release
                                                      : "(HotSpot)");
    if (major && minor && sec)
        jv.rt.version = (uint32_t) * (const int *)major << 24 |
                        (uint32_t) * (const int *)minor << 16 | (uint32_t) * (const int *)sec << 8;
    /* _osthread moved from JavaThread (17, 21) to Thread (25). */
    if (!vm_field("JavaThread", "_thread_state", &jv.state_off, NULL) ||
        (!vm_field("JavaThread", "_osthread", &jv.osthread_off, NULL) &&
         !vm_field("Thread", "_osthread", &jv.osthread_off, NULL)) ||
        !vm_field("OSThread", "_pthread_id", &jv.pthread_off, NULL) ||
        !vm_int("_thread_in_native", &jv.in_native)) {
        unsupported("no JavaThread::_thread_state in the VM's tables");
        return 0;
    }
    if (vm_field("CodeCache", "_low_bound", NULL, &lo) &&
        vm_field("CodeCache", "_high_bound", NULL, &hi) && lo && hi) {
        jv.rt.eval_lo = *(const uintptr_t *)lo;
        jv.rt.eval_hi = *(const uintptr_t *)hi;
    }
    return 1;
}

/* The JavaThread of the calling thread, or 0 if it is not one. */
static uintptr_t java_thread(void **env)
{
    if (((int (*)(void *, void **, int))JFN(jv.vm, VM_GET_ENV))(jv.vm, env, JNI_VERSION_1_6_) !=
        JNI_OK_)
        return 0;
    return (uintptr_t)*env - (uintptr_t)jv.env_off;
}

/* Whether t is the calling thread's JavaThread: its OSThread names us.
 * checked: t is only a guess (the search below), so every read is checked. */
static int is_us(uintptr_t t, int checked)
{
    const uintptr_t *field = (const uintptr_t *)(t + (uintptr_t)jv.osthread_off);
    if (checked && !cw_readable(field, 8))
        return 0;
    uintptr_t os = *field;
    if (!os || (os & 7) ||
        (checked && !cw_readable((const void *)(os + (uintptr_t)jv.pthread_off), 8)))
        return 0;
    return *(const pthread_t *)(os + (uintptr_t)jv.pthread_off) == pthread_self();
}

/* Where the JNIEnv sits in a JavaThread: not in the tables, so found once,
 * on a thread GetEnv names, as the distance at which the thread's OSThread
 * is ours (then checked at every use). */
static int find_env_offset(void)
{
    void *env;
    jv.env_off = 0;
    if (!java_thread(&env))
        return 0;
    for (long d = 8; d <= 4096; d += 8) {
        if (is_us((uintptr_t)env - (uintptr_t)d, 1)) {
            jv.env_off = d;
            return 1;
        }
    }
    unsupported("no JavaThread found for a JNIEnv");
    return -1;
}

/* Whether the JavaThread t (GetEnv's, at the offset found: a live object
 * of this thread, read without checks) is ours and in native code. */
static int in_native(uintptr_t t)
{
    return is_us(t, 0) && __atomic_load_n((const int *)(t + (uintptr_t)jv.state_off),
                                          __ATOMIC_ACQUIRE) == jv.in_native;
}

/* ASGCT walks only while some environment wants ClassLoad events. */
static void class_loaded(void *ti, void *env, void *thread, void *klass)
{
    (void)ti, (void)env, (void)thread, (void)klass;
}

/* One step of finding the VM, by the thread that holds J_BUSY: the next
 * state. */
static int setup(void)
{
    if (!jv.get_vms) {
        *(void **)&jv.get_vms = jvm_sym("JNI_GetCreatedJavaVMs");
        *(void **)&jv.agct = jvm_sym("AsyncGetCallTrace");
        if (!jv.get_vms || !tables_from()) {
            unsupported("a libjvm without JNI_GetCreatedJavaVMs or gHotSpotVMStructs");
            return J_OFF;
        }
        if (!read_tables())
            return J_OFF;
    }
    int n = 0;
    if (!jv.vm && (jv.get_vms(&jv.vm, 1, &n) != JNI_OK_ || n < 1)) {
        jv.vm = NULL;
        return J_LOOK; /* being created */
    }
    if (!jv.env_off) {
        int r = find_env_offset();
        if (r <= 0)
            return r < 0 ? J_OFF : J_LOOK; /* not a Java thread: the next may be */
    }
    void *env;
    uintptr_t t = java_thread(&env);
    if (!t || !in_native(t))
        return J_LOOK;
    void *ti = NULL;
    if (((int (*)(void *, void **, int))JFN(jv.vm, VM_GET_ENV))(jv.vm, &ti, JVMTI_VERSION_1_2_) !=
            JNI_OK_ ||
        !ti)
        return J_LOOK; /* not in its live phase yet */
    uint32_t caps[4] = {CAN_SOURCE_AND_LINES, 0, 0, 0};
    ((int (*)(void *, const void *))JFN(ti, TI_ADD_CAPABILITIES))(ti, caps);
    jv.jvmti = ti;
    void *callbacks[EV_CLASS_LOAD - EV_FIRST + 1] = {0};
    callbacks[EV_CLASS_LOAD - EV_FIRST] = (void *)class_loaded;
    if (jv.agct &&
        (((int (*)(void *, const void *, int))JFN(ti, TI_SET_EVENT_CALLBACKS))(
             ti, callbacks, (int)sizeof callbacks) ||
         ((int (*)(void *, int, int, void *, ...))JFN(ti, TI_SET_EVENT_NOTIFICATION_MODE))(
             ti, JVMTI_ENABLE_, EV_CLASS_LOAD, NULL)))
        jv.agct = NULL; /* GetStackTrace alone */
    jv.rt.status = CW_RT_WALKED;
    return J_WALK;
}

/* Tells the current ring (a fork child's is new) what was found. */
static void publish_runtime(void)
{
    struct cw_header *h = cw.hdr;
    uint32_t early = atomic_load_explicit(&jv.early, memory_order_relaxed);
    if (!jv.rt.status || (atomic_load_explicit(&jv.ring, memory_order_relaxed) == (void *)h &&
                          atomic_load_explicit(&jv.told, memory_order_relaxed) == early))
        return;
    if (early && jv.rt.status == CW_RT_WALKED)
        snprintf(jv.rt.reason, sizeof jv.rt.reason,
                 "for %u stack%s recorded before the JVM was found (native frames only)", early,
                 early == 1 ? "" : "s");
    struct cw_runtime *rt = &h->runtimes[CW_LANG_JAVA];
    memcpy(rt->name, jv.rt.name, sizeof rt->name);
    memcpy(rt->reason, jv.rt.reason, sizeof rt->reason);
    rt->version = jv.rt.version;
    rt->eval_lo = jv.rt.eval_lo;
    rt->eval_hi = jv.rt.eval_hi;
    atomic_store_explicit((_Atomic uint32_t *)&rt->status, jv.rt.status, memory_order_release);
    atomic_store_explicit(&jv.told, early, memory_order_relaxed);
    atomic_store_explicit(&jv.ring, (void *)h, memory_order_relaxed);
}

/* ---- code records ------------------------------------------------------------ */

struct method_src {
    void *method, *env;
};

static void ti_free(void *p)
{
    if (p)
        ((int (*)(void *, void *))JFN(jv.jvmti, TI_DEALLOCATE))(jv.jvmti, p);
}

#define NAME_MAX_ 512

/* "Ljava/net/ServerSocket;" + "accept" -> "java.net.ServerSocket.accept";
 * its package as a path prefix ("java/net/") in pkg. A hidden class (a
 * lambda's: "LJavaServer$$Lambda$220.0x00007f273c148208;") loses its
 * address, which changes from run to run and would make the same stack
 * another one for SARIF's fingerprints. Returns the length written. */
static int qualified(const char *sig, const char *method, char *out, char *pkg)
{
    size_t n = strlen(sig);
    pkg[0] = 0;
    if (n < 3 || sig[0] != 'L' || sig[n - 1] != ';') /* an array's methods */
        return snprintf(out, NAME_MAX_, "%s.%s", sig, method);
    const char *cls = sig + 1, *slash = NULL;
    size_t len = n - 2;
    for (size_t i = 0; i + 2 < len; i++)
        if ((cls[i] == '.' || cls[i] == '/' || cls[i] == '+') && cls[i + 1] == '0' &&
            cls[i + 2] == 'x' && i > 0 && memchr(cls, '$', i)) {
            len = i;
            break;
        }
    for (size_t i = 0; i < len; i++)
        if (cls[i] == '/')
            slash = cls + i;
    size_t plen = slash ? (size_t)(slash - cls) + 1 : 0;
    if (plen >= NAME_MAX_ / 2)
        plen = 0;
    memcpy(pkg, cls, plen);
    pkg[plen] = 0;
    int w = snprintf(out, NAME_MAX_, "%.*s.%s", (int)len, cls, method);
    for (size_t i = 0; i < len && i < NAME_MAX_; i++)
        if (out[i] == '/')
            out[i] = '.';
    return w;
}

static int java_fill(struct cw_code *c, void *ctx)
{
    const struct method_src *m = ctx;
    void *ti = jv.jvmti, *cls = NULL;
    char *name = NULL, *sig = NULL, *src = NULL;
    struct line_entry *lt = NULL;
    int nl = 0, ok = 0;
    if (((int (*)(void *, void *, char **, char **, char **))JFN(ti, TI_GET_METHOD_NAME))(
            ti, m->method, &name, NULL, NULL) ||
        ((int (*)(void *, void *, void **))JFN(ti, TI_GET_METHOD_DECLARING_CLASS))(ti, m->method,
                                                                                   &cls) ||
        ((int (*)(void *, void *, char **, char **))JFN(ti, TI_GET_CLASS_SIGNATURE))(ti, cls, &sig,
                                                                                     NULL))
        goto out;
    if (((int (*)(void *, void *, char **))JFN(ti, TI_GET_SOURCE_FILE_NAME))(ti, cls, &src))
        src = NULL; /* no SourceFile attribute (a lambda's hidden class) */
    if (((int (*)(void *, void *, int *, struct line_entry **))JFN(ti, TI_GET_LINE_NUMBER_TABLE))(
            ti, m->method, &nl, &lt))
        nl = 0, lt = NULL; /* native or abstract, or compiled without -g:lines */
    char qname[NAME_MAX_], pkg[NAME_MAX_], file[NAME_MAX_] = "";
    int qn = qualified(sig, name, qname, pkg);
    int fn = src ? snprintf(file, sizeof file, "%s%s", pkg, src) : 0;
    if (qn >= NAME_MAX_)
        qn = NAME_MAX_ - 1;
    if (fn >= NAME_MAX_)
        fn = NAME_MAX_ - 1;
    if (!cw_blob_str(qname, qn, &c->name_off, &c->name_len) ||
        !cw_blob_str(file, fn, &c->file_off, &c->file_len))
        goto out;
    /* (bci, line) pairs, 8 bytes each: the table lang_frames.c reads. */
    uint8_t *p = nl > 0 && nl <= 8192 ? cw_blob_alloc((uint32_t)nl * 8, &c->lines_off) : NULL;
    if (p) {
        for (int i = 0; i < nl; i++) {
            uint32_t pair[2] = {(uint32_t)lt[i].start, (uint32_t)lt[i].line};
            memcpy(p + 8 * i, pair, 8);
        }
        c->lines_len = (uint32_t)nl * 8;
    }
    c->lang = CW_LANG_JAVA;
    c->version = jv.rt.version;
    c->first_line = nl > 0 ? lt[0].line : 0;
    ok = 1;
out:
    ti_free(name);
    ti_free(sig);
    ti_free(src);
    ti_free(lt);
    if (cls) /* a local reference in the JNI method's frame: not ours to keep */
        ((void (*)(void *, void *))JFN(m->env, ENV_DELETE_LOCAL_REF))(m->env, cls);
    return ok;
}

/* ---- the walk -------------------------------------------------------------------- */

/* The calling thread's Java frames, innermost first, into fr (up to
 * CW_LANG_DEPTH + 1): their number, 0 if none. */
static int java_frames(void *env, struct frame_info *fr)
{
    if (jv.agct) {
        struct asgct_frame af[CW_LANG_DEPTH + 1];
        struct asgct_trace tr = {.env = env, .frames = af};
        jv.agct(&tr, CW_LANG_DEPTH + 1, NULL);
        int i = 0;
        while (i < tr.num_frames && af[i].method) {
            fr[i] = (struct frame_info){af[i].method, af[i].lineno};
            i++;
        }
        if (tr.num_frames > 0 && i == tr.num_frames)
            return i;
    }
    int n = 0;
    if (((int (*)(void *, void *, int, int, struct frame_info *, int *))JFN(
            jv.jvmti, TI_GET_STACK_TRACE))(jv.jvmti, NULL, 0, CW_LANG_DEPTH + 1, fr, &n))
        return 0;
    return n;
}

/* The language stacks this thread interned last, by a hash of the raw
 * frames: a thread serving connections records the same few paths again
 * and again, and each of its ~20-40 frames' code record lookups and the
 * stack's interning cost more than the walk itself (a 64-bit hash of
 * (jmethodID, bci) pairs, which HotSpot never reuses, is taken as the
 * identity, as stacks.c does with return addresses). */
#define RECENT 8
static __thread struct {
    uint64_t hash;
    const void *ring;
    uint32_t id;
} recent[RECENT] __attribute__((tls_model("initial-exec")));

static uint64_t frames_hash(const struct frame_info *fr, int n)
{
    uint64_t h = CW_HASH_SEED ^ (uint64_t)n;
    for (int i = 0; i < n; i++)
        h = cw_hash_step(cw_hash_step(h, (uintptr_t)fr[i].method), (uint64_t)fr[i].location);
    return h;
}

uint32_t cw_java_stack(void)
{
    int state = atomic_load_explicit(&jv.state, memory_order_acquire);
    if (CW_UNLIKELY(state != J_WALK)) {
        if (state == J_NONE || state == J_OFF)
            return 0;
        int expect = J_LOOK;
        if (!atomic_compare_exchange_strong(&jv.state, &expect, J_BUSY))
            return 0; /* another thread is looking: this stack goes without */
        state = setup();
        if (state == J_LOOK && !jv.vm)
            atomic_fetch_add_explicit(&jv.early, 1, memory_order_relaxed);
        atomic_store_explicit(&jv.state, state, memory_order_release);
        if (state != J_WALK) {
            if (jv.rt.status)
                publish_runtime();
            return 0;
        }
    }
    publish_runtime();
    void *env;
    uintptr_t t = java_thread(&env);
    if (!t || !in_native(t))
        return 0;
    struct frame_info fr[CW_LANG_DEPTH + 1];
    int n = java_frames(env, fr);
    if (n <= 0)
        return 0;
    uint64_t hash = frames_hash(fr, n);
    unsigned slot = (unsigned)(hash >> 61);
    if (recent[slot].hash == hash && recent[slot].ring == cw.hdr)
        return recent[slot].id;
    int truncated = n > CW_LANG_DEPTH;
    if (truncated)
        n = CW_LANG_DEPTH;
    struct cw_lang_frame frames[CW_LANG_DEPTH];
    for (int i = 0; i < n; i++) {
        struct method_src src = {fr[i].method, env};
        uint64_t key[4] = {(uintptr_t)fr[i].method, CW_LANG_JAVA, 0, 0};
        frames[i].code = cw_code_intern(key, java_fill, &src);
        /* A native method's location is negative: no line. */
        frames[i].pos =
            fr[i].location < 0 ? CW_LF_POS_MASK : (uint32_t)fr[i].location & CW_LF_POS_MASK;
    }
    /* All of them stand at the first code-cache frame. */
    frames[n - 1].pos |= CW_LF_ENTRY;
    uint32_t id = cw_lang_intern(CW_LANG_JAVA, frames, n, truncated);
    /* Only a complete stack is remembered: a code record that did not fit
     * (table full) may fit later. */
    int complete = id != 0;
    for (int i = 0; i < n && complete; i++)
        complete = frames[i].code != 0;
    if (complete) {
        recent[slot].hash = hash;
        recent[slot].ring = cw.hdr;
        recent[slot].id = id;
    }
    return id;
}

/*
 * main.c - the closewatch command line: option parsing, the run/report/
 * watch/dump commands, and exit statuses (0 clean, 1 or --error-exitcode
 * findings, 2 usage or input errors).
 */
#include <elf.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <pwd.h>
#include <grp.h>
#include <fcntl.h>

#include "dump.h"
#include "kernel.h"
#include "metrics_serve.h"
#include "program_kind.h"
#include "../bpf/recorder.h"
#include "model.h"
#include "report.h"
#include "tree_view.h"
#include "view_build.h"
#include "watch.h"

#define EXIT_USAGE 2

static const char usage_text[] =
    "usage: closewatch run    [OPTIONS] -- PROGRAM [ARGS...]\n"
    "       closewatch report [OPTIONS] [PID | RING-FILE]...\n"
    "       closewatch watch  PID... [--record] [--interval=SEC] [--window=SEC] [--count=N]\n"
    "       closewatch metrics [--listen=ADDR:PORT | --textfile=PATH] [PID... | --all]\n"
    "       closewatch dump   RING-FILE\n"
    "\n"
    "Finds TCP sockets stuck in CLOSE_WAIT (the peer closed, the program never called\n"
    "close()) and shows the code that opened them and the code that saw the EOF.\n"
    "\n"
    "commands:\n"
    "  run       run PROGRAM under libclosewatch.so (children too), report when it ends;\n"
    "            exits with the program's status, or --error-exitcode if findings exist\n"
    "  report    report on running processes (PID) or recorded ones (RING-FILE);\n"
    "            with no argument, every ring of yours in the ring directory\n"
    "  watch     live view of processes: TCP state counts over time, their CLOSE_WAIT\n"
    "            sockets, and a line when CLOSE_WAIT grows (over --window, default 60 s);\n"
    "            --record (root): record them from the kernel (eBPF) while watching, so\n"
    "            sockets opened from now on get stacks (closewatch report PID afterwards)\n"
    "  metrics   OpenMetrics for Prometheus: sockets by state, findings, fds, and where\n"
    "            CLOSE_WAIT sockets were opened; once to stdout, to a node_exporter\n"
    "            textfile every --interval (default 15 s), or served on --listen\n"
    "  dump      print a ring file's raw contents (debugging)\n"
    "\n"
    "options (run, report):\n"
    "  --grace=SEC            time a socket may sit in CLOSE_WAIT before it is a finding\n"
    "                         (default 5; fractions allowed)\n"
    "  --format=FMT           text (default), json, markdown, sarif, junit or html\n"
    "  -o, --output=FILE      write the report to FILE ('%p' becomes the pid);\n"
    "                         default: stdout for report, stderr for run\n"
    "  --error-exitcode=N     exit status when something is flagged (report default 1)\n"
    "  --suppressions=FILE    hide findings matching KIND:PATTERN rules in FILE\n"
    "  --spin-threshold=N     read()==0 this many times on one socket is eof_spin (default 100)\n"
    "  --info                 also list sockets still open at exit (open_at_exit)\n"
    "  --frames=program|all   Python/Java/JS stacks: fold the runtime's internals (default)\n"
    "                         or show every native frame too\n"
    "  --dir=DIR              ring directory (default $CLOSEWATCH_DIR, else /dev/shm)\n"
    "  --keep                 run: keep the ring files even when the report is clean\n"
    "  --recorder=auto|bpf|preload|both\n"
    "                         run: who records: the preload (LD_PRELOAD), the kernel (eBPF,\n"
    "                         root: sees Go, static and raw-syscall programs), or both, the\n"
    "                         kernel then only for processes without the preload; auto\n"
    "                         (default): bpf when root and the program is Go or static\n"
    "  --user=NAME            run: run the program as NAME (its rings are NAME's)\n"
    "\n"
    "options (metrics):\n"
    "  --listen=ADDR:PORT     serve GET /metrics (e.g. 127.0.0.1:9464)\n"
    "  --textfile=PATH        rewrite PATH atomically every --interval seconds\n"
    "  --all                  every live process with a ring in the ring directory\n"
    "  --top=N                opening places of CLOSE_WAIT sockets per process (default 5)\n"
    "  --count=N              stop after N writes or scrapes; --grace and --dir as above\n"
    "  -h, --help             this text;  --version  the version\n"
    "\n"
    "finding kinds: close_wait, late_close, eof_spin, double_close, emfile, untracked,\n"
    "open_at_exit (info). See `man closewatch` and README.md.\n";

struct cli {
    struct cw_options opt;
    const char *format;
    const char *output;
    const char *suppressions;
    const char *dir;
    int error_exitcode; /* -1: not given */
    int keep;
    double interval;
    int count;
    const char *listen, *textfile;
    int all, top;
    double window;
    const char *recorder; /* run: auto, bpf, preload or both */
    const char *user;     /* run: the program's user */
    int record;           /* watch: record with the bpf recorder while watching */
};

__attribute__((format(printf, 1, 2))) static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("closewatch: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n(try 'closewatch --help')\n", stderr);
    va_end(ap);
    return EXIT_USAGE;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    /* Above 1e9 s (31 years, and inf) seconds no longer convert to the
     * uint64_t nanoseconds the model uses: --grace=1e20 became 0. */
    if (errno || end == s || *end || v < 0 || v != v || v > 1e9)
        return -1;
    *out = v;
    return 0;
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

enum {
    OPT_GRACE = 256,
    OPT_FORMAT,
    OPT_EXIT,
    OPT_SUPP,
    OPT_KEEP,
    OPT_DIR,
    OPT_INFO,
    OPT_SPIN,
    OPT_INTERVAL,
    OPT_COUNT,
    OPT_LISTEN,
    OPT_TEXTFILE,
    OPT_ALL,
    OPT_TOP,
    OPT_WINDOW,
    OPT_FRAMES,
    OPT_RECORDER,
    OPT_USER,
    OPT_RECORD,
    OPT_VERSION
};

/* Parses options up to the first non-option (or "--"); returns its index or
 * -1 after printing a usage error. With permute (report, watch), options may
 * also follow the operands, as in `watch PID --count=1`: getopt moves the
 * operands to the end. run must not permute: PROGRAM's own options follow. */
static int parse_options(int argc, char **argv, struct cli *c, int permute)
{
    static const struct option longopts[] = {
        {"grace", required_argument, 0, OPT_GRACE},
        {"format", required_argument, 0, OPT_FORMAT},
        {"output", required_argument, 0, 'o'},
        {"error-exitcode", required_argument, 0, OPT_EXIT},
        {"suppressions", required_argument, 0, OPT_SUPP},
        {"keep", no_argument, 0, OPT_KEEP},
        {"dir", required_argument, 0, OPT_DIR},
        {"info", no_argument, 0, OPT_INFO},
        {"spin-threshold", required_argument, 0, OPT_SPIN},
        {"interval", required_argument, 0, OPT_INTERVAL},
        {"count", required_argument, 0, OPT_COUNT},
        {"listen", required_argument, 0, OPT_LISTEN},
        {"textfile", required_argument, 0, OPT_TEXTFILE},
        {"all", no_argument, 0, OPT_ALL},
        {"top", required_argument, 0, OPT_TOP},
        {"window", required_argument, 0, OPT_WINDOW},
        {"frames", required_argument, 0, OPT_FRAMES},
        {"recorder", required_argument, 0, OPT_RECORDER},
        {"user", required_argument, 0, OPT_USER},
        {"record", no_argument, 0, OPT_RECORD},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, OPT_VERSION},
        {0, 0, 0, 0},
    };
    int spin = 100;
    optind = 1;
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, permute ? "o:h" : "+o:h", longopts, NULL)) != -1) {
        switch (ch) {
        case OPT_GRACE:
            if (parse_double(optarg, &c->opt.grace_s))
                return usage_error("--grace: expected seconds (e.g. 5 or 0.5), got '%s'", optarg),
                       -1;
            break;
        case OPT_FORMAT:
            if (strcmp(optarg, "text") && strcmp(optarg, "json") && strcmp(optarg, "markdown") &&
                strcmp(optarg, "sarif") && strcmp(optarg, "junit") && strcmp(optarg, "html"))
                return usage_error("--format: expected text, json, markdown, sarif, junit or html, "
                                   "got '%s'",
                                   optarg),
                       -1;
            c->format = optarg;
            break;
        case 'o': c->output = optarg; break;
        case OPT_EXIT:
            if (parse_int(optarg, 0, 255, &c->error_exitcode))
                return usage_error("--error-exitcode: expected 0..255, got '%s'", optarg), -1;
            break;
        case OPT_SUPP: c->suppressions = optarg; break;
        case OPT_KEEP: c->keep = 1; break;
        case OPT_DIR: c->dir = optarg; break;
        case OPT_INFO: c->opt.include_info = 1; break;
        case OPT_SPIN:
            if (parse_int(optarg, 1, INT_MAX, &spin))
                return usage_error("--spin-threshold: expected a positive count, got '%s'", optarg),
                       -1;
            break;
        case OPT_INTERVAL:
            if (parse_double(optarg, &c->interval) || c->interval <= 0)
                return usage_error("--interval: expected seconds > 0, got '%s'", optarg), -1;
            break;
        case OPT_COUNT:
            if (parse_int(optarg, 1, INT_MAX, &c->count))
                return usage_error("--count: expected a positive count, got '%s'", optarg), -1;
            break;
        case OPT_LISTEN: c->listen = optarg; break;
        case OPT_TEXTFILE: c->textfile = optarg; break;
        case OPT_ALL: c->all = 1; break;
        case OPT_TOP:
            if (parse_int(optarg, 0, 1000, &c->top))
                return usage_error("--top: expected 0..1000, got '%s'", optarg), -1;
            break;
        case OPT_FRAMES:
            if (strcmp(optarg, "all") && strcmp(optarg, "program"))
                return usage_error("--frames: expected program or all, got '%s'", optarg), -1;
            c->opt.all_frames = !strcmp(optarg, "all");
            break;
        case OPT_WINDOW:
            if (parse_double(optarg, &c->window) || c->window <= 0)
                return usage_error("--window: expected seconds > 0, got '%s'", optarg), -1;
            break;
        case OPT_RECORDER:
            if (strcmp(optarg, "auto") && strcmp(optarg, "bpf") && strcmp(optarg, "preload") &&
                strcmp(optarg, "both"))
                return usage_error("--recorder: expected auto, bpf, preload or both, got '%s'",
                                   optarg),
                       -1;
            c->recorder = optarg;
            break;
        case OPT_USER: c->user = optarg; break;
        case OPT_RECORD: c->record = 1; break;
        case 'h': fputs(usage_text, stdout); exit(0);
        case OPT_VERSION: printf("closewatch %s\n", CW_VERSION); exit(0);
        default: return usage_error("unknown or incomplete option '%s'", argv[optind - 1]), -1;
        }
    }
    c->opt.spin_threshold = (uint32_t)spin;
    return optind;
}

/* -o FILE with %p replaced by pid. */
static FILE *open_output(const char *pattern, int pid, FILE *dflt)
{
    if (!pattern)
        return dflt;
    char path[PATH_MAX];
    size_t n = 0;
    for (const char *p = pattern; *p && n + 16 < sizeof path; p++) {
        if (p[0] == '%' && p[1] == 'p') {
            n += (size_t)snprintf(path + n, sizeof path - n, "%d", pid);
            p++;
        } else {
            path[n++] = *p;
        }
    }
    path[n] = 0;
    FILE *f = fopen(path, "w");
    if (!f)
        fprintf(stderr, "closewatch: %s: cannot write the report: %s\n", path, strerror(errno));
    return f;
}

/* Symbolizes, applies suppressions, writes the report; returns the number
 * of error findings, or -1 if the report could not be written. */
static int write_report(struct cli *c, struct cw_analysis *a, int pid, FILE *dflt)
{
    struct cw_symbolizer *sym = cw_symbolizer_new();
    struct cw_suppressions sup = {0};
    char err[512];
    cw_analysis_link_inherited(a);
    if (c->suppressions) {
        if (cw_suppressions_load(&sup, c->suppressions, err, sizeof err)) {
            fprintf(stderr, "closewatch: %s\n", err);
            cw_symbolizer_free(sym);
            return -1;
        }
    }
    struct cw_view *v = cw_view_build(a, sym, c->suppressions ? &sup : NULL);
    FILE *out = open_output(c->output, pid, dflt);
    int errors = -1;
    if (out) {
        const char *f = c->format ? c->format : "text";
        if (!strcmp(f, "json"))
            cw_report_json(out, v);
        else if (!strcmp(f, "markdown"))
            cw_report_markdown(out, v);
        else if (!strcmp(f, "sarif"))
            cw_report_sarif(out, v);
        else if (!strcmp(f, "junit"))
            cw_report_junit(out, v);
        else if (!strcmp(f, "html"))
            cw_report_html(out, v);
        else
            cw_report_text(out, v);
        if (out != dflt)
            fclose(out);
        else
            fflush(out);
        errors = v->errors;
    }
    cw_view_free(v);
    cw_suppressions_free(&sup);
    cw_symbolizer_free(sym);
    return errors;
}

static const char *ring_dir(const struct cli *c)
{
    if (c->dir)
        return c->dir;
    const char *d = getenv("CLOSEWATCH_DIR");
    return d && *d ? d : "/dev/shm";
}

static int is_pid(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

static int cmd_report(int argc, char **argv, struct cli *c)
{
    int first = parse_options(argc, argv, c, 1);
    if (first < 0)
        return EXIT_USAGE;
    struct cw_analysis a;
    cw_analysis_init(&a, &c->opt);
    char err[1024];
    int input_errors = 0, report_pid = 0;
    if (first == argc) {
        char **paths;
        int n = cw_find_rings(ring_dir(c), 0, &paths);
        for (int i = 0; i < n; i++) {
            int rc = cw_analyze_ring(&a, paths[i], err, sizeof err);
            /* Scanning a shared directory: other users' rings are not ours to read. */
            if (rc != CW_RING_OK && rc != CW_RING_EOWNER)
                fprintf(stderr, "closewatch: %s %s\n",
                        rc == CW_RING_EUNINIT ? "warning: skipping" : "skipping", err);
        }
        cw_free_paths(paths, n);
    }
    for (int i = first; i < argc; i++) {
        int rc;
        if (is_pid(argv[i])) {
            int pid = atoi(argv[i]);
            rc = cw_analyze_pid(&a, pid, ring_dir(c), err, sizeof err);
            report_pid = report_pid ? report_pid : pid;
        } else {
            /* A file the user names may be a symlink (a directory scan
             * never follows one): read what it points to. */
            char real[PATH_MAX];
            rc = cw_analyze_ring(&a, realpath(argv[i], real) ? real : argv[i], err, sizeof err);
        }
        if (rc == CW_RING_EUNINIT) {
            fprintf(stderr, "closewatch: warning: skipping %s\n", err);
        } else if (rc != 0) {
            fprintf(stderr, "closewatch: %s\n", err);
            input_errors++;
        }
    }
    if (!report_pid && a.nprocs)
        report_pid = a.procs[0]->pid;
    int errors = input_errors && !a.nprocs ? -1 : write_report(c, &a, report_pid, stdout);
    cw_analysis_free(&a);
    /* Anything flagged wins: an unreadable input next to a leak must not
     * hide the leak from CI. */
    if (errors > 0)
        return c->error_exitcode >= 0 ? c->error_exitcode : 1;
    if (errors < 0 || input_errors)
        return EXIT_USAGE;
    return 0;
}

/* libclosewatch.so next to this binary (build tree) or in ../lib (installed). */
/* Node's JavaScript frames (preload/closewatch-node.js, installed next to
 * the library): the node processes the program starts load it. */
static void node_options(const char *lib)
{
    const char *slash = strrchr(lib, '/'), *old = getenv("NODE_OPTIONS");
    char js[PATH_MAX], opts[2 * PATH_MAX + 32];
    snprintf(js, sizeof js, "%.*s/closewatch-node.js", slash ? (int)(slash - lib) : 1,
             slash ? lib : ".");
    if (access(js, R_OK) || strchr(js, '"'))
        return;
    snprintf(opts, sizeof opts, "--require \"%s\"%s%s", js, old && *old ? " " : "", old ? old : "");
    setenv("NODE_OPTIONS", opts, 1);
}

static int find_library(char *out, size_t len)
{
    const char *env = getenv("CLOSEWATCH_LIB");
    if (env && *env) {
        snprintf(out, len, "%s", env);
        return access(out, R_OK) == 0 ? 0 : -1;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = 0;
    char *slash = strrchr(self, '/');
    *slash = 0;
    static const char *const candidates[] = {"%s/libclosewatch.so", "%s/../lib/libclosewatch.so",
                                             "%s/../lib/closewatch/libclosewatch.so"};
    for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++) {
        snprintf(out, len, candidates[i], self);
        if (access(out, R_OK) == 0) {
            char *real = realpath(out, NULL);
            if (real) {
                snprintf(out, len, "%s", real);
                free(real);
            }
            return 0;
        }
    }
    return -1;
}

/* Resolves a command like execvp would (PATH search), into out. */
static int resolve_command(const char *cmd, char *out, size_t len)
{
    if (strchr(cmd, '/')) {
        snprintf(out, len, "%s", cmd);
        return access(out, X_OK) == 0 ? 0 : -1;
    }
    const char *path = getenv("PATH");
    for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        snprintf(out, len, "%.*s/%s", (int)n, p, cmd);
        if (access(out, X_OK) == 0)
            return 0;
        p += n + (end ? 1 : 0);
    }
    return -1;
}

/*
 * LD_PRELOAD cannot reach a static binary or a setuid/setgid one: say so up
 * front rather than report "no leaked sockets" about a program we never saw.
 */
static void warn_if_unpreloadable(const char *path, int kind)
{
    if (kind & CW_PROG_SETID)
        fprintf(stderr,
                "closewatch: warning: %s is setuid/setgid: the dynamic loader ignores "
                "LD_PRELOAD for it: closewatch sees only what the kernel shows of its "
                "sockets (CLOSE_WAIT ones with their age, no stacks)\n",
                path);
    else if (kind & CW_PROG_STATIC)
        fprintf(stderr,
                "closewatch: warning: %s is statically linked: LD_PRELOAD cannot load into "
                "it: closewatch sees only what the kernel shows of its sockets (CLOSE_WAIT "
                "ones with their age, no stacks; dynamically linked children are still "
                "traced; as root, --recorder=bpf gives stacks)\n",
                path);
    else if (kind & CW_PROG_GO)
        fprintf(stderr,
                "closewatch: note: %s is a Go program: it makes its system calls itself, so "
                "its sockets show without stacks; as root, --recorder=bpf gives them\n",
                path);
}

/* A terminating signal for the program, forwarded by cmd_run's loop once
 * it has looked at the process tree: what the signal ends is seen first. */
static volatile sig_atomic_t pending_signal;

static void forward_signal(int sig)
{
    pending_signal = sig;
}

#define TREE_SAMPLE_MS 500

/* Waits for the program, looking at its tree every TREE_SAMPLE_MS and
 * before each signal it forwards. */
static int wait_program(pid_t pid, struct cw_tree *tree)
{
    int pidfd = (int)syscall(SYS_pidfd_open, (long)pid, 0L);
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
            break;
        int sig = pending_signal;
        if (sig) {
            pending_signal = 0;
            cw_tree_sample(tree, pid, 1);
            kill(pid, sig);
        }
        struct pollfd p = {.fd = pidfd, .events = POLLIN};
        if (poll(pidfd >= 0 ? &p : NULL, pidfd >= 0 ? 1 : 0, TREE_SAMPLE_MS) == 0)
            cw_tree_sample(tree, pid, 0);
    }
    if (pidfd >= 0)
        close(pidfd);
    return status;
}

static void remove_dir(const char *dir)
{
    char **paths;
    int n = cw_find_rings(dir, 0, &paths);
    for (int i = 0; i < n; i++)
        unlink(paths[i]);
    cw_free_paths(paths, n);
    rmdir(dir);
}

/* The bpf recorder writing rings in dir, each with lib as its sampler, at
 * the period and depth the preload would use (CLOSEWATCH_SAMPLE_MS,
 * CLOSEWATCH_DEPTH); NULL with the kernel's reason in err. */
static struct cwb_recorder *start_recorder(const char *dir, const char *lib, int skip_preloaded,
                                           char *err, size_t errlen)
{
    const char *ms = getenv("CLOSEWATCH_SAMPLE_MS"), *depth = getenv("CLOSEWATCH_DEPTH");
    struct cwb_config cfg = {.dir = dir,
                             .sampler = lib,
                             .sample_ms = ms && *ms ? (unsigned)atoi(ms) : 1000,
                             .depth = depth && atoi(depth) > 0 && atoi(depth) <= CW_MAX_DEPTH
                                          ? (unsigned)atoi(depth)
                                          : 32,
                             .skip_preloaded = skip_preloaded};
    return cwb_start(&cfg, err, errlen);
}

static int cmd_run(int argc, char **argv, struct cli *c)
{
    int first = parse_options(argc, argv, c, 0);
    if (first < 0)
        return EXIT_USAGE;
    if (first == argc)
        return usage_error("run: no program given (closewatch run [OPTIONS] -- PROGRAM [ARGS...])");
    char lib[PATH_MAX];
    if (find_library(lib, sizeof lib))
        return usage_error("run: cannot find libclosewatch.so (set CLOSEWATCH_LIB)"), 127;

    char prog[PATH_MAX];
    int kind = resolve_command(argv[first], prog, sizeof prog) == 0 ? cw_program_kind(prog) : 0;
    const char *mode = c->recorder ? c->recorder : "auto";
    int use_bpf =
        !strcmp(mode, "bpf") || !strcmp(mode, "both") ||
        (!strcmp(mode, "auto") && geteuid() == 0 && (kind & (CW_PROG_GO | CW_PROG_STATIC)));
    int use_preload = strcmp(mode, "bpf") != 0 && (strcmp(mode, "auto") != 0 || !use_bpf);
    struct passwd *pw = NULL;
    if (c->user && !(pw = getpwnam(c->user)))
        return usage_error("--user: no such user '%s'", c->user);

    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/closewatch-run-XXXXXX", c->dir ? c->dir : "/dev/shm");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "closewatch: cannot create a ring directory %s: %s\n", dir,
                strerror(errno));
        return EXIT_USAGE;
    }
    if (pw && chown(dir, pw->pw_uid, pw->pw_gid) != 0) {
        fprintf(stderr, "closewatch: --user: cannot give %s to %s: %s\n", dir, c->user,
                strerror(errno));
        rmdir(dir);
        return EXIT_USAGE;
    }

    struct cwb_recorder *rec = NULL;
    if (use_bpf) {
        char err[256];
        rec = start_recorder(dir, lib, use_preload, err, sizeof err);
        if (!rec) {
            fprintf(stderr,
                    "closewatch: the kernel refused the bpf recorder (%s): recording with the "
                    "preload only; root with BPF gives Go and static programs their stacks\n",
                    err);
            use_preload = 1;
        }
    }
    if (use_preload)
        warn_if_unpreloadable(prog, kind);

    int go[2] = {-1, -1}; /* the child execs once the recorder traces it */
    if (rec && pipe2(go, O_CLOEXEC) != 0) {
        fprintf(stderr, "closewatch: pipe: %s\n", strerror(errno));
        cwb_stop(rec);
        rmdir(dir);
        return EXIT_USAGE;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "closewatch: fork: %s\n", strerror(errno));
        rmdir(dir);
        return EXIT_USAGE;
    }
    if (pid == 0) {
        if (use_preload) {
            const char *old = getenv("LD_PRELOAD");
            char preload[2 * PATH_MAX + 2];
            snprintf(preload, sizeof preload, "%s%s%s", lib, old && *old ? " " : "",
                     old ? old : "");
            setenv("LD_PRELOAD", preload, 1);
            node_options(lib);
        }
        setenv("CLOSEWATCH_DIR", dir, 1);
        if (pw && (initgroups(pw->pw_name, pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
                   setuid(pw->pw_uid) != 0)) {
            fprintf(stderr, "closewatch: --user=%s: %s\n", c->user, strerror(errno));
            _exit(127);
        }
        if (pw) {
            setenv("HOME", pw->pw_dir, 1);
            setenv("USER", pw->pw_name, 1);
            setenv("LOGNAME", pw->pw_name, 1);
        }
        char b;
        if (go[0] >= 0 && (close(go[1]), read(go[0], &b, 1) != 1))
            _exit(127);
        execvp(argv[first], argv + first);
        fprintf(stderr, "closewatch: cannot run %s: %s\n", argv[first], strerror(errno));
        _exit(127);
    }
    if (rec) {
        close(go[0]);
        if (kind & CW_PROG_GO)
            cwb_probe(rec, prog); /* before its first request */
        if (cwb_trace(rec, pid) != 0)
            fprintf(stderr, "closewatch: the bpf recorder cannot trace %d: %s\n", (int)pid,
                    strerror(errno));
        if (write(go[1], "g", 1) != 1)
            fprintf(stderr, "closewatch: cannot start the program: %s\n", strerror(errno));
        close(go[1]);
    }
    struct sigaction sa = {.sa_handler = forward_signal};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0; /* interrupt the wait: the loop forwards the signal */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGQUIT, &sa, NULL);
    struct cw_tree tree = {.ring_dir = dir};
    int status = wait_program(pid, &tree);
    if (rec) {
        unsigned long long lost = cwb_stop(rec);
        if (lost)
            fprintf(stderr, "closewatch: the bpf recorder lost %llu events (its buffer was full)\n",
                    lost);
    }
    int program_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);

    struct cw_analysis a;
    cw_analysis_init(&a, &c->opt);
    char **paths;
    char err[1024];
    cw_tree_report(&tree, &a);
    int n = cw_find_rings(dir, 0, &paths), input_errors = 0;
    for (int i = 0; i < n; i++) {
        int rc = cw_analyze_ring(&a, paths[i], err, sizeof err);
        if (rc == CW_RING_EUNINIT) {
            fprintf(stderr, "closewatch: warning: skipping %s\n", err);
        } else if (rc != 0) {
            fprintf(stderr, "closewatch: %s\n", err);
            input_errors++;
        }
    }
    cw_free_paths(paths, n);
    int errors = write_report(c, &a, pid, stderr);
    cw_analysis_free(&a);
    cw_tree_free(&tree);

    /* Nothing to keep when no process made a ring (a static binary). */
    if ((errors == 0 && !input_errors && !c->keep) || n == 0)
        remove_dir(dir);
    else
        fprintf(stderr, "closewatch: ring files kept in %s (closewatch report %s/*.ring)\n", dir,
                dir);
    if (errors > 0 && c->error_exitcode >= 0)
        return c->error_exitcode;
    return program_status;
}

static int cmd_watch(int argc, char **argv, struct cli *c)
{
    c->interval = 2;
    c->window = 60;
    int first = parse_options(argc, argv, c, 1);
    if (first < 0)
        return EXIT_USAGE;
    if (first == argc)
        return usage_error("watch: expected PIDs (closewatch watch PID... [--interval=SEC])");
    int *pids = calloc((size_t)(argc - first), sizeof *pids);
    if (!pids)
        return EXIT_USAGE;
    for (int i = first; i < argc; i++) {
        int pid = is_pid(argv[i]) ? atoi(argv[i]) : 0;
        if (!pid || !cw_pid_alive(pid, NULL)) {
            fprintf(stderr, "closewatch: %s: no such process\n", argv[i]);
            free(pids);
            return EXIT_USAGE;
        }
        pids[i - first] = pid;
    }
    struct cwb_recorder *rec = NULL;
    if (c->record) {
        char lib[PATH_MAX], err[256];
        if (find_library(lib, sizeof lib)) {
            free(pids);
            return usage_error("watch --record: cannot find libclosewatch.so (set CLOSEWATCH_LIB)");
        }
        rec = start_recorder(ring_dir(c), lib, 1, err, sizeof err);
        if (!rec) {
            fprintf(stderr,
                    "closewatch: watch --record: the kernel refused the bpf recorder (%s): it "
                    "needs root, or CAP_BPF and CAP_PERFMON\n",
                    err);
            free(pids);
            return EXIT_USAGE;
        }
        for (int i = 0; i < argc - first; i++)
            if (cwb_attach(rec, pids[i], err, sizeof err) != 0)
                fprintf(stderr, "closewatch: watch --record: not recording pid %d: %s\n", pids[i],
                        err);
        /* Ctrl-C ends the watch, not closewatch: the recording must stop
         * cleanly, its rings marked. */
        struct sigaction sa = {.sa_handler = forward_signal};
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
    }
    struct cw_watch_opts o = {.opt = c->opt,
                              .dir = ring_dir(c),
                              .pids = pids,
                              .npids = argc - first,
                              .interval = c->interval,
                              .window_s = c->window,
                              .count = c->count,
                              .stop = &pending_signal};
    int rc = cw_watch_run(&o);
    if (rec) {
        unsigned long long lost = cwb_stop(rec);
        if (lost)
            fprintf(stderr, "closewatch: the bpf recorder lost %llu events (its buffer was full)\n",
                    lost);
        fprintf(stderr,
                "closewatch: recording stopped; what was recorded stays in %s "
                "(closewatch report PID, or the ring files there)\n",
                ring_dir(c));
    }
    free(pids);
    return rc;
}

static int cmd_metrics(int argc, char **argv, struct cli *c)
{
    c->interval = 15;
    c->top = 5;
    int first = parse_options(argc, argv, c, 1);
    if (first < 0)
        return EXIT_USAGE;
    if (c->listen && c->textfile)
        return usage_error("metrics: --listen and --textfile exclude each other");
    if ((first == argc) == !c->all)
        return usage_error(
            "metrics: expected PIDs or --all (closewatch metrics [--listen=ADDR:PORT "
            "| --textfile=PATH] [PID... | --all])");
    int *pids = calloc((size_t)(argc - first + 1), sizeof *pids);
    if (!pids)
        return EXIT_USAGE;
    for (int i = first; i < argc; i++) {
        if (!is_pid(argv[i])) {
            free(pids);
            return usage_error("metrics: expected a PID, got '%s'", argv[i]);
        }
        pids[i - first] = atoi(argv[i]);
    }
    struct cw_metrics_opts o = {.opt = c->opt,
                                .dir = ring_dir(c),
                                .pids = pids,
                                .npids = argc - first,
                                .all = c->all,
                                .listen = c->listen,
                                .textfile = c->textfile,
                                .interval = c->interval,
                                .count = c->count,
                                .top = c->top};
    int rc = cw_metrics_run(&o);
    free(pids);
    return rc;
}

static int cmd_dump(int argc, char **argv)
{
    if (argc != 2)
        return usage_error("dump: expected one RING-FILE");
    struct cw_ring r;
    char err[1024];
    if (cw_ring_open(&r, argv[1], err, sizeof err) != CW_RING_OK) {
        fprintf(stderr, "closewatch: %s\n", err);
        return EXIT_USAGE;
    }
    cw_dump(stdout, &r);
    cw_ring_close(&r);
    return 0;
}

/* Rings are mapped: one truncated by someone else while we read it faults
 * with SIGBUS. Say so instead of dying silently. */
static void on_sigbus(int sig)
{
    (void)sig;
    static const char msg[] = "closewatch: a ring file shrank while it was being read "
                              "(truncated by another process?)\n";
    ssize_t n = write(2, msg, sizeof msg - 1);
    (void)n;
    _exit(EXIT_USAGE);
}

int main(int argc, char **argv)
{
    signal(SIGBUS, on_sigbus);
    struct cli c = {.opt = {.grace_s = 5, .spin_threshold = 100}, .error_exitcode = -1};
    if (argc < 2) {
        fputs(usage_text, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("closewatch %s\n", CW_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "run"))
        return cmd_run(argc - 1, argv + 1, &c);
    if (!strcmp(cmd, "report"))
        return cmd_report(argc - 1, argv + 1, &c);
    if (!strcmp(cmd, "watch"))
        return cmd_watch(argc - 1, argv + 1, &c);
    if (!strcmp(cmd, "metrics"))
        return cmd_metrics(argc - 1, argv + 1, &c);
    if (!strcmp(cmd, "dump"))
        return cmd_dump(argc - 1, argv + 1);
    return usage_error("unknown command '%s'", cmd);
}

/*
 * test_formats.c - the report formats (Markdown, SARIF, JSON, text) and
 * suppression files, on analyses built by hand: processes without rings and
 * findings filled in directly, so every field is known and no program has to
 * run. JSON and SARIF are checked with the strict parser of tests/jsonq.c,
 * which also hands out fields by path.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <link.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../analyzer/report.h"
#include "../analyzer/view_build.h"
#include "harness.h"
#include "jsonq.h"

/* ---- JSON, read with tests/jsonq.c (jansson) ------------------------------- */

/* The short names these tests were written with. */
#define jfree jq_free
#define jget  jq_get
#define jstr  jq_str
#define jlen  jq_len

/* Parses text; NULL, with *error_at the offset of the first error, if it is
 * not JSON. */
static struct jv *jparse(const char *text, long *error_at)
{
    char err[256] = "";
    struct jv *v = jq_parse(text, err, sizeof err);
    *error_at = v ? -1 : strncmp(err, "offset ", 7) ? 0 : strtol(err + 7, NULL, 10);
    return v;
}

static struct jv *parse_or_fail(const char *text)
{
    long at;
    struct jv *v = jparse(text, &at);
    cr_assert_not_null(v, "invalid JSON at offset %ld: ...%.60s...\nfull text:\n%s", at,
                       text + (at > 20 ? at - 20 : 0), text);
    return v;
}

/* The parser itself must reject what is not JSON, or the tests prove little. */
Test(formats, json_parser_rejects_invalid_text)
{
    const char *bad[] = {"",         "{",   "{\"a\":1,}", "[1 2]",      "\"a\nb\"",
                         "\"\\x\"",  "01",  "1.",         "{\"a\" 1}",  "\"\xff\"",
                         "\"\xc3\"", "nul", "[1]]",       "\"\\ud800\""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        long at;
        struct jv *v = jparse(bad[i], &at);
        cr_expect_null(v, "accepted invalid JSON: %s", bad[i]);
        jfree(v);
    }
    long at;
    struct jv *v = jparse(" {\"a\":[1,-2.5e3,true,null,\"\\u00fc\\ud83d\\ude00\"]} ", &at);
    cr_assert_not_null(v, "rejected valid JSON at %ld", at);
    cr_expect_str_eq(jstr(v, "a.4"), "\xc3\xbc\xf0\x9f\x98\x80");
    cr_expect_eq(jget(v, "a.1")->num, -2500.0);
    jfree(v);
}

/* ---- analyses built by hand ----------------------------------------------- */

/* A name with every character the formats must escape: | " \ newline,
 * backticks, a tab and non-ASCII letters. */
#define NASTY_EXE "/srv/we|ird \"dir\"\\x\n```\tü/sérvér"

/* What a report is made from: the view is built from these at each render. */
struct report_in {
    struct cw_analysis *a;
    struct cw_symbolizer *sym;
    struct cw_suppressions *sup; /* NULL: none */
};

struct fx {
    struct cw_analysis a;
    struct cw_symbolizer *sym;
    struct report_in r;
    struct cw_suppressions sup;
};

static void fx_init(struct fx *x)
{
    struct cw_options opt = {.grace_s = 5.0, .spin_threshold = 100, .include_info = 1};
    memset(x, 0, sizeof *x);
    cw_analysis_init(&x->a, &opt);
    x->a.now_realtime_ns = 1700000060000000000ull;
    x->sym = cw_symbolizer_new();
    cr_assert_not_null(x->sym);
    x->r = (struct report_in){.a = &x->a, .sym = x->sym, .sup = NULL};
}

static void fx_fini(struct fx *x)
{
    cw_suppressions_free(&x->sup);
    cw_analysis_free(&x->a);
    cw_symbolizer_free(x->sym);
}

static struct cw_process *add_proc(struct cw_analysis *a, int pid, const char *exe,
                                   const char *cmdline)
{
    struct cw_process *p = calloc(1, sizeof *p);
    struct cw_process **v = realloc(a->procs, (size_t)(a->nprocs + 1) * sizeof *v);
    cr_assert(p && v);
    a->procs = v;
    a->procs[a->nprocs++] = p;
    p->pid = pid;
    p->ppid = 1;
    snprintf(p->exe, sizeof p->exe, "%s", exe);
    snprintf(p->cmdline, sizeof p->cmdline, "%s", cmdline);
    p->start_realtime_ns = 1700000000123000000ull; /* 2023-11-14T22:13:20.123Z */
    p->start_mono_ns = 1000000000ull;
    p->end_mono_ns = p->start_mono_ns + 30000000000ull;
    p->end = CW_END_RUNNING;
    return p;
}

static struct cw_addr inet(const char *ip, uint16_t port)
{
    struct cw_addr x = {.family = AF_INET, .port = port};
    cr_assert_eq(inet_pton(AF_INET, ip, x.bytes), 1);
    return x;
}

/* A finding of kind k on p with fd; the pointer is valid until the next add. */
static struct cw_finding *add_finding(struct cw_analysis *a, struct cw_process *p, enum cw_kind k,
                                      int fd)
{
    struct cw_finding *v = realloc(a->findings, (size_t)(a->nfindings + 1) * sizeof *v);
    cr_assert_not_null(v);
    a->findings = v;
    a->cap = a->nfindings + 1;
    struct cw_finding *f = &v[a->nfindings++];
    memset(f, 0, sizeof *f);
    f->kind = k;
    f->proc = p;
    f->fd = fd;
    f->family = AF_INET;
    f->type = SOCK_STREAM;
    f->origin = CW_ORIGIN_ACCEPT;
    f->local = inet("127.0.0.1", 8080);
    f->peer = inet("127.0.0.1", (uint16_t)(5100 + fd));
    f->tcp_state = CW_TCP_CLOSE_WAIT;
    f->eof = CW_EOF_OBSERVED;
    f->seconds_in_close_wait = 12.3;
    f->age_seconds = 20.0;
    return f;
}

static void add_timeline(struct cw_finding *f, double t, uint16_t type, int64_t arg0)
{
    struct cw_timeline_entry *e = &f->timeline[f->ntimeline++];
    e->mono_ns = f->proc->start_mono_ns + (uint64_t)(t * 1e9);
    e->type = type;
    e->arg0 = arg0;
}

/*
 * The usual scene: two sockets in CLOSE_WAIT (one group), a double close
 * added first (grouping must still put CLOSE_WAIT first), an untracked
 * socket and one still open at exit (information only).
 */
static struct cw_process *scene(struct fx *x)
{
    struct cw_process *p = add_proc(&x->a, 4242, "/srv/leaky_server", "leaky_server --port 8080");
    add_finding(&x->a, p, CW_K_DOUBLE_CLOSE, 11)->err = 9;
    struct cw_finding *f = add_finding(&x->a, p, CW_K_CLOSE_WAIT, 7);
    f->recv_q = 42;
    add_timeline(f, 0.5, CW_EV_OPEN, CW_ORIGIN_ACCEPT);
    add_timeline(f, 2.25, CW_EV_EOF, CW_EOF_READ);
    add_timeline(f, 2.5, CW_EV_STATE, CW_TCP_CLOSE_WAIT);
    add_finding(&x->a, p, CW_K_CLOSE_WAIT, 9)->seconds_in_close_wait = 3.5;
    f = add_finding(&x->a, p, CW_K_UNTRACKED, 13);
    f->origin = CW_ORIGIN_UNTRACKED;
    f->eof = CW_EOF_UNKNOWN;
    f = add_finding(&x->a, p, CW_K_OPEN_AT_EXIT, 12);
    f->tcp_state = CW_TCP_ESTABLISHED;
    f->seconds_in_close_wait = 0;
    return p;
}

static char *render(void (*fn)(FILE *, const struct cw_view *), struct report_in *r)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    cr_assert_not_null(m);
    struct cw_view *v = cw_view_build(r->a, r->sym, r->sup);
    cr_assert_not_null(v);
    fn(m, v);
    cw_view_free(v);
    fclose(m);
    return buf;
}

/* Applies x's suppressions the way a report does (building its view). */
static void apply_suppressions(struct fx *x)
{
    cw_view_free(cw_view_build(&x->a, x->sym, &x->sup));
}

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

/* The line of text that starts with prefix, copied into buf. */
static const char *line_starting(const char *text, const char *prefix, char *buf, size_t len)
{
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, prefix, strlen(prefix))) {
            snprintf(buf, len, "%.*s", (int)strcspn(p, "\n"), p);
            return buf;
        }
    return NULL;
}

/* Cell separators of a Markdown table row: pipes not escaped by a backslash. */
static int row_pipes(const char *row)
{
    int n = 0;
    for (const char *p = row; *p; p++) {
        if (*p == '\\' && p[1]) {
            p++;
            continue;
        }
        n += *p == '|';
    }
    return n;
}

/* ---- JSON and text -------------------------------------------------------- */

Test(formats, json_report_parses_and_keeps_every_finding)
{
    struct fx x;
    fx_init(&x);
    scene(&x);
    char *out = render(cw_report_json, &x.r);
    struct jv *v = parse_or_fail(out);
    cr_expect_eq(jlen(v, "findings"), 5);
    cr_expect_str_eq(jstr(v, "findings.0.kind"), "close_wait");
    cr_expect_str_eq(jstr(v, "findings.0.local"), "127.0.0.1:8080");
    cr_expect_str_eq(jstr(v, "processes.0.exe"), "/srv/leaky_server");
    cr_expect_eq(jget(v, "summary.by_kind.close_wait")->num, 2);
    jfree(v);
    free(out);
    fx_fini(&x);
}

Test(formats, text_report_has_groups_and_summary)
{
    struct fx x;
    fx_init(&x);
    scene(&x);
    char *out = render(cw_report_text, &x.r);
    cr_expect(strstr(out, "ERROR: 2 sockets in CLOSE_WAIT without close()"), "%s", out);
    cr_expect(strstr(out, "127.0.0.1:8080 <-> 127.0.0.1:5107"), "%s", out);
    cr_expect(strstr(out, "\nSUMMARY: closewatch: 4 findings in 1 process (close_wait: 2, "
                          "double_close: 1, untracked: 1)\n"),
              "%s", out);
    free(out);
    fx_fini(&x);
}

/* ---- SARIF --------------------------------------------------------------- */

Test(formats, sarif_has_schema_version_and_driver)
{
    struct fx x;
    fx_init(&x);
    scene(&x);
    char *out = render(cw_report_sarif, &x.r);
    struct jv *v = parse_or_fail(out);
    cr_expect_str_eq(jstr(v, "$schema"), "https://json.schemastore.org/sarif-2.1.0.json");
    cr_expect_str_eq(jstr(v, "version"), "2.1.0");
    cr_expect_eq(jlen(v, "runs"), 1);
    cr_expect_str_eq(jstr(v, "runs.0.tool.driver.name"), "closewatch");
    cr_expect_str_eq(jstr(v, "runs.0.tool.driver.version"), CW_VERSION);
    cr_expect_str_eq(jstr(v, "runs.0.tool.driver.informationUri"),
                     "https://github.com/closewatch/closewatch");
    jfree(v);
    free(out);
    fx_fini(&x);
}

Test(formats, sarif_rules_one_per_kind_with_levels)
{
    struct fx x;
    fx_init(&x);
    scene(&x);
    char *out = render(cw_report_sarif, &x.r);
    struct jv *v = parse_or_fail(out);
    cr_assert_eq(jlen(v, "runs.0.tool.driver.rules"), CW_K_COUNT);
    char path[128];
    for (int k = 0; k < CW_K_COUNT; k++) {
        snprintf(path, sizeof path, "runs.0.tool.driver.rules.%d.id", k);
        cr_expect_str_eq(jstr(v, path), cw_kind_name((enum cw_kind)k));
        snprintf(path, sizeof path, "runs.0.tool.driver.rules.%d.defaultConfiguration.level", k);
        cr_expect_str_eq(jstr(v, path), k == CW_K_OPEN_AT_EXIT ? "note" : "error");
        snprintf(path, sizeof path, "runs.0.tool.driver.rules.%d.fullDescription.text", k);
        cr_expect_str_eq(jstr(v, path), cw_kind((enum cw_kind)k)->advice);
        snprintf(path, sizeof path, "runs.0.tool.driver.rules.%d.shortDescription.text", k);
        cr_expect(jstr(v, path) && *jstr(v, path), "rule %d has no short description", k);
    }
    jfree(v);
    free(out);
    fx_fini(&x);
}

Test(formats, sarif_one_result_per_unsuppressed_finding)
{
    struct fx x;
    fx_init(&x);
    scene(&x);
    char *out = render(cw_report_sarif, &x.r);
    struct jv *v = parse_or_fail(out);
    cr_assert_eq(jlen(v, "runs.0.results"), 5, "%s", out);
    /* Worst group first, as in the text report. */
    static const char *const rule[] = {"close_wait", "close_wait", "double_close", "untracked",
                                       "open_at_exit"};
    char path[128];
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "runs.0.results.%d.ruleId", i);
        cr_expect_str_eq(jstr(v, path), rule[i]);
        snprintf(path, sizeof path, "runs.0.results.%d.level", i);
        cr_expect_str_eq(jstr(v, path), i == 4 ? "note" : "error");
        snprintf(path, sizeof path, "runs.0.results.%d.ruleIndex", i);
        const struct jv *idx = jget(v, path);
        cr_assert_not_null(idx);
        snprintf(path, sizeof path, "runs.0.tool.driver.rules.%d.id", (int)idx->num);
        cr_expect_str_eq(jstr(v, path), rule[i], "ruleIndex of result %d points elsewhere", i);
        snprintf(path, sizeof path, "runs.0.results.%d.suppressions", i);
        cr_expect_null(jget(v, path));
        snprintf(path, sizeof path, "runs.0.results.%d.partialFingerprints.closewatch/v1", i);
        cr_expect(jstr(v, path) && strlen(jstr(v, path)) == 16, "result %d fingerprint", i);
    }
    jfree(v);
    free(out);
    fx_fini(&x);
}

Test(formats, sarif_message_names_socket_and_eof)
{
    struct fx x;
    fx_init(&x);
    scene(&x);
    char *out = render(cw_report_sarif, &x.r);
    struct jv *v = parse_or_fail(out);
    const char *msg = jstr(v, "runs.0.results.0.message.text");
    cr_assert_not_null(msg);
    cr_expect(strstr(msg, "socket fd 7 (127.0.0.1:8080 <-> 127.0.0.1:5107) in CLOSE_WAIT for "
                          "12.3 s without close(); eof: observed"),
              "%s", msg);
    cr_expect(strstr(msg, "pid 4242 (leaky_server)"), "%s", msg);
    cr_expect(strstr(jstr(v, "runs.0.results.2.message.text"), "fd 11"), "%s", out);
    jfree(v);
    free(out);
    fx_fini(&x);
}

/* No ring, no symbols: the result still has a place, the program. */
Test(formats, sarif_result_without_frames_has_logical_location)
{
    struct fx x;
    fx_init(&x);
    scene(&x);
    char *out = render(cw_report_sarif, &x.r);
    struct jv *v = parse_or_fail(out);
    cr_expect_str_eq(jstr(v, "runs.0.results.3.ruleId"), "untracked");
    cr_expect_str_eq(jstr(v, "runs.0.results.3.locations.0.logicalLocations.0.fullyQualifiedName"),
                     "/srv/leaky_server");
    cr_expect_null(jget(v, "runs.0.results.3.locations.0.physicalLocation"));
    cr_expect_null(jget(v, "runs.0.results.3.stacks"), "a stack without frames was written");
    jfree(v);
    free(out);
    fx_fini(&x);
}

/* Same kind and stack in another run (other pid) gives the same fingerprint;
 * another kind does not. */
Test(formats, sarif_fingerprint_ignores_pid_not_kind)
{
    struct fx x;
    fx_init(&x);
    struct cw_process *p1 = add_proc(&x.a, 100, "/srv/leaky_server", "leaky_server");
    struct cw_process *p2 = add_proc(&x.a, 200, "/srv/leaky_server", "leaky_server");
    add_finding(&x.a, p1, CW_K_CLOSE_WAIT, 7);
    add_finding(&x.a, p2, CW_K_CLOSE_WAIT, 8);
    add_finding(&x.a, p2, CW_K_EOF_SPIN, 9);
    char *out = render(cw_report_sarif, &x.r);
    struct jv *v = parse_or_fail(out);
    cr_assert_eq(jlen(v, "runs.0.results"), 3);
    const char *f[3];
    char path[128];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "runs.0.results.%d.partialFingerprints.closewatch/v1", i);
        f[i] = jstr(v, path);
        cr_assert_not_null(f[i]);
    }
    cr_expect_str_eq(jstr(v, "runs.0.results.2.ruleId"), "eof_spin");
    cr_expect_str_eq(f[0], f[1]);
    cr_expect_str_neq(f[0], f[2]);
    jfree(v);
    free(out);
    fx_fini(&x);
}

/* ---- Markdown ------------------------------------------------------------- */

Test(formats, markdown_has_facts_and_summary_table)
{
    struct fx x;
    fx_init(&x);
    scene(&x);
    char *out = render(cw_report_markdown, &x.r);
    cr_expect(!strncmp(out, "# closewatch report", 19), "%s", out);
    cr_expect(strstr(out, "| pid | 4242 (parent 1) |"), "%s", out);
    cr_expect(strstr(out, "| started | 2023-11-14T22:13:20.123Z |"), "%s", out);
    cr_expect(strstr(out, "| duration | 30.0 s |"), "%s", out);
    cr_expect(strstr(out, "| state | running |"), "%s", out);
    cr_expect(strstr(out, "| closewatch | " CW_VERSION " |"), "%s", out);
    cr_expect(strstr(out, "| grace | 5.0 s |"), "%s", out);
    cr_expect(strstr(out, "| kernel | "), "%s", out);
    cr_expect(strstr(out, "| kind | count |\n| --- | ---: |\n| close_wait | 2 |\n"), "%s", out);
    cr_expect(strstr(out, "| double_close | 1 |\n"), "%s", out);
    cr_expect(strstr(out, "| emfile | 0 |\n"), "%s", out);
    cr_expect(strstr(out, "SUMMARY: closewatch: 4 findings in 1 process"), "%s", out);
    free(out);
    fx_fini(&x);
}

Test(formats, markdown_group_sections_worst_first)
{
    struct fx x;
    fx_init(&x);
    scene(&x);
    char *out = render(cw_report_markdown, &x.r);
    const char *g1 = strstr(out, "## 1. ERROR: 2 sockets in CLOSE_WAIT without close()");
    const char *g2 = strstr(out, "## 2. ERROR: 1 double close");
    const char *g4 = strstr(out, "## 4. 1 socket still open at exit");
    cr_assert(g1 && g2 && g4 && g1 < g2 && g2 < g4, "%s", out);
    cr_expect(strstr(g1, "eof: observed"), "%s", out);
    cr_expect(strstr(g1, "| 4242 | 7 | 127.0.0.1:8080 | 127.0.0.1:5107 | 12.3 | CLOSE_WAIT | 42 |"),
              "%s", out);
    cr_expect(strstr(g1, "| 4242 | 9 | 127.0.0.1:8080 | 127.0.0.1:5109 | 3.5 | CLOSE_WAIT | 0 |"),
              "%s", out);
    /* The first socket's timeline, relative to the process start. */
    cr_expect(strstr(g1, "| 0.500 | open |"), "%s", out);
    cr_expect(strstr(g1, "| 2.250 | eof |"), "%s", out);
    cr_expect(strstr(g1, cw_kind(CW_K_CLOSE_WAIT)->advice), "%s", out);
    cr_expect(strstr(g2, "fd 11 in pid 4242"), "%s", out);
    cr_expect(strstr(out, "No backtrace"), "%s", out);
    free(out);
    fx_fini(&x);
}

Test(formats, markdown_caps_socket_table_at_ten)
{
    struct fx x;
    fx_init(&x);
    struct cw_process *p = add_proc(&x.a, 7, "/bin/pool", "pool");
    for (int fd = 20; fd < 32; fd++)
        add_finding(&x.a, p, CW_K_CLOSE_WAIT, fd);
    char *out = render(cw_report_markdown, &x.r);
    cr_expect_eq(count_of(out, "| 7 | 2"), 10, "%s", out);
    cr_expect(strstr(out, "... and 2 more"), "%s", out);
    free(out);
    fx_fini(&x);
}

Test(formats, markdown_no_findings_says_so)
{
    struct fx x;
    fx_init(&x);
    add_proc(&x.a, 99, "/usr/bin/good", "good --citizen");
    char *out = render(cw_report_markdown, &x.r);
    cr_expect(strstr(out, "No findings"), "%s", out);
    cr_expect(strstr(out, "| kind | count |"), "%s", out);
    cr_expect(!strstr(out, "## 1."), "%s", out);
    cr_expect(strstr(out, "SUMMARY: closewatch: no leaked sockets in 1 process"), "%s", out);
    free(out);
    fx_fini(&x);
}

/* ---- special characters, every format ------------------------------------- */

static void nasty_scene(struct fx *x)
{
    struct cw_process *p = add_proc(&x->a, 31, NASTY_EXE, NASTY_EXE " --flag=a|b");
    add_finding(&x->a, p, CW_K_CLOSE_WAIT, 5);
    add_finding(&x->a, p, CW_K_UNTRACKED, 6)->origin = CW_ORIGIN_UNTRACKED;
}

Test(formats, json_and_sarif_escape_special_characters)
{
    struct fx x;
    fx_init(&x);
    nasty_scene(&x);
    char *out = render(cw_report_json, &x.r);
    struct jv *v = parse_or_fail(out);
    cr_expect_str_eq(jstr(v, "processes.0.exe"), NASTY_EXE);
    jfree(v);
    free(out);

    out = render(cw_report_sarif, &x.r);
    v = parse_or_fail(out);
    cr_expect_str_eq(jstr(v, "runs.0.results.1.locations.0.logicalLocations.0.fullyQualifiedName"),
                     NASTY_EXE);
    cr_expect(strstr(jstr(v, "runs.0.results.0.message.text"), "(s\xc3\xa9rv\xc3\xa9r)"), "%s",
              out);
    jfree(v);
    free(out);
    fx_fini(&x);
}

Test(formats, markdown_escapes_table_cells)
{
    struct fx x;
    fx_init(&x);
    nasty_scene(&x);
    char *out = render(cw_report_markdown, &x.r);
    char row[2048];
    cr_assert_not_null(line_starting(out, "| program | ", row, sizeof row), "%s", out);
    /* One row, three cell separators: the | and newline inside were escaped. */
    cr_expect_eq(row_pipes(row), 3, "%s", row);
    cr_expect(strstr(row, "we\\|ird"), "%s", row);
    cr_expect(strstr(row, "a\\|b"), "%s", row);
    cr_expect(strstr(row, "s\xc3\xa9rv\xc3\xa9r"), "non-ASCII must pass unchanged: %s", row);
    cr_expect(row[strlen(row) - 1] == '|', "row broken by a newline: %s", row);
    /* Every table row of the report keeps the shape of its header. */
    for (const char *p = out; (p = strstr(p, "\n|")); p++) {
        char line[2048];
        snprintf(line, sizeof line, "%.*s", (int)strcspn(p + 1, "\n"), p + 1);
        cr_expect(line[strlen(line) - 1] == '|', "table row cut: %s", line);
    }
    free(out);
    fx_fini(&x);
}

/* ---- stacks in fenced blocks (a minimal ring that holds only stacks) ------- */

struct mem_ring {
    void *base;
    size_t size;
};

static size_t align8(size_t n)
{
    return (n + 7) & ~(size_t)7;
}

/* A ring image with stacks 1..n (3 frames each: pcs[i]) and nothing else:
 * the reports read stacks from the ring, modules from the process. */
static struct mem_ring ring_with_stacks(int n, const uint64_t (*pcs)[3])
{
    size_t slot = sizeof(struct cw_stack_slot) + 8 * 4;
    size_t fd_off = align8(sizeof(struct cw_header));
    size_t stack_off = align8(fd_off + sizeof(struct cw_fd_entry));
    size_t module_off = align8(stack_off + 4 * slot);
    size_t ring_off = align8(module_off + sizeof(struct cw_module));
    size_t size = ring_off + sizeof(struct cw_event);
    struct mem_ring m = {calloc(1, size), size};
    cr_assert_not_null(m.base);
    struct cw_header *h = m.base;
    h->magic = CW_MAGIC;
    h->version = CW_LAYOUT_VERSION;
    h->header_size = sizeof *h;
    h->file_size = size;
    h->fd_off = fd_off, h->fd_cap = 1, h->fd_entry_size = sizeof(struct cw_fd_entry);
    h->stack_off = stack_off, h->stack_cap = 4, h->stack_depth = 4,
    h->stack_slot_size = (uint32_t)slot;
    h->module_off = module_off, h->module_cap = 1, h->module_entry_size = sizeof(struct cw_module);
    h->ring_off = ring_off, h->ring_cap = 1, h->event_size = sizeof(struct cw_event);
    for (int i = 0; i < n && i < 4; i++) {
        struct cw_stack_slot *s = (void *)((char *)m.base + stack_off + (size_t)i * slot);
        s->hash = (uint64_t)i + 1;
        for (int d = 0; d < 3 && pcs[i][d]; d++)
            s->pcs[s->depth++] = pcs[i][d];
        s->ready = 1;
    }
    return m;
}

/* Gives p the ring m, so its findings can name stacks in it. */
static void attach_ring(struct cw_process *p, struct mem_ring *m)
{
    char err[256];
    cr_assert_eq(cw_ring_from_memory(&p->ring, m->base, m->size, "mem", err, sizeof err),
                 CW_RING_OK, "%s", err);
    p->has_ring = 1;
}

/* Stacks of made-up addresses: no module covers them, so frames are bare. */
static const uint64_t bare_pcs[3][3] = {
    {0x400000, 0x400010, 0x400020},
    {0x401000, 0x401010, 0x401020},
    {0x402000, 0x402010, 0x402020},
};

Test(formats, markdown_fenced_block_per_stack)
{
    struct fx x;
    fx_init(&x);
    struct mem_ring m = ring_with_stacks(3, bare_pcs);
    struct cw_process *p = add_proc(&x.a, 55, "/srv/leaky_server", "leaky_server");
    attach_ring(p, &m);
    struct cw_finding *f = add_finding(&x.a, p, CW_K_LATE_CLOSE, 7);
    f->open_stack = 1, f->eof_stack = 2, f->close_stack = 3, f->eof_how = CW_EOF_READ;
    f->closed = 1;
    char *out = render(cw_report_markdown, &x.r);
    cr_expect(strstr(out, "Opened (accept) at:\n\n```\n#0  0x0000000000400000 in ??"), "%s", out);
    cr_expect(strstr(out, "EOF (a read returned 0) seen at:\n\n```\n#0  0x0000000000401000"), "%s",
              out);
    cr_expect(strstr(out, "Closed at:\n\n```\n#0  0x0000000000402000"), "%s", out);
    cr_expect(strstr(out, "#2  0x0000000000402020 in ??\n```\n"), "%s", out);
    /* Three stacks and the SUMMARY: four blocks, eight fences. */
    cr_expect_eq(count_of(out, "```\n"), 8, "%s", out);
    free(out);

    out = render(cw_report_sarif, &x.r);
    struct jv *v = parse_or_fail(out);
    cr_expect_eq(jlen(v, "runs.0.results.0.stacks.0.frames"), 3, "%s", out);
    const struct jv *addr = jget(
        v, "runs.0.results.0.stacks.0.frames.1.location.physicalLocation.address.absoluteAddress");
    cr_expect(addr && addr->num == 0x400010, "%s", out);
    jfree(v);
    free(out);
    fx_fini(&x);
    free(m.base);
}

/* ---- real symbols: stacks inside this test program ------------------------ */

/* Three places in this file for recorded stacks to point at; distinct
 * bodies so that identical-code folding cannot merge them. */
__attribute__((noinline)) static int site_accept(int x)
{
    return x * 3 + 1;
}
__attribute__((noinline)) static int site_handler(int x)
{
    return x * 5 + 2;
}
__attribute__((noinline)) static int site_read(int x)
{
    return x * 7 + 3;
}

/* A "return address" inside f: the symbolizer looks up address - 1. */
static uint64_t inside(int (*f)(int))
{
    return (uint64_t)(uintptr_t)f + 1;
}

static int first_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct cw_module *m = arg;
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD)
            continue;
        uint64_t a = info->dlpi_addr + ph->p_vaddr;
        lo = a < lo ? a : lo;
        hi = a + ph->p_memsz > hi ? a + ph->p_memsz : hi;
    }
    m->bias = info->dlpi_addr, m->start = lo, m->end = hi;
    return 1; /* the first object is the program itself */
}

/* p's module list: just this test program, as the recorder would list it. */
static void give_own_module(struct cw_process *p)
{
    struct cw_module *m = calloc(1, sizeof *m);
    cr_assert_not_null(m);
    dl_iterate_phdr(first_object, m);
    ssize_t n = readlink("/proc/self/exe", m->path, sizeof m->path - 1);
    cr_assert_gt(n, 0);
    m->ready = 1;
    p->modules = m;
    p->nmodules = 1;
}

/* Process 77 with stacks 1 = accept <- handler, 2 = read <- handler,
 * symbolized against this program. */
static struct cw_process *symbolized_proc(struct fx *x, struct mem_ring *m)
{
    const uint64_t pcs[2][3] = {
        {inside(site_accept), inside(site_handler), 0},
        {inside(site_read), inside(site_handler), 0},
    };
    *m = ring_with_stacks(2, pcs);
    struct cw_process *p = add_proc(&x->a, 77, "/srv/leaky_server", "leaky_server");
    attach_ring(p, m);
    give_own_module(p);
    return p;
}

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && !strcmp(s + n - t, tail);
}

Test(formats, sarif_places_finding_at_source_line)
{
    struct fx x;
    fx_init(&x);
    struct mem_ring m;
    struct cw_process *p = symbolized_proc(&x, &m);
    struct cw_finding *f = add_finding(&x.a, p, CW_K_CLOSE_WAIT, 7);
    f->open_stack = 1, f->eof_stack = 2, f->eof_how = CW_EOF_READ;
    char *out = render(cw_report_sarif, &x.r);
    struct jv *v = parse_or_fail(out);
    const char *uri = jstr(v, "runs.0.results.0.locations.0.physicalLocation.artifactLocation.uri");
    cr_assert_not_null(uri, "%s", out);
    cr_expect(ends_with(uri, "tests/test_formats.c"), "%s", uri);
    cr_expect(uri[0] != '/', "an absolute path must be a file:// URI: %s", uri);
    const struct jv *line =
        jget(v, "runs.0.results.0.locations.0.physicalLocation.region.startLine");
    cr_expect(line && line->num >= 1, "%s", out);
    cr_expect_str_eq(jstr(v, "runs.0.results.0.locations.0.logicalLocations.0.fullyQualifiedName"),
                     "site_accept");
    cr_expect_str_eq(
        jstr(v, "runs.0.results.0.relatedLocations.0.logicalLocations.0.fullyQualifiedName"),
        "site_read");
    cr_expect_str_eq(jstr(v, "runs.0.results.0.stacks.0.frames.1.location.logicalLocations.0."
                             "fullyQualifiedName"),
                     "site_handler");
    cr_expect_str_eq(jstr(v, "runs.0.results.0.stacks.0.frames.0.module"), p->modules[0].path);
    jfree(v);
    free(out);

    out = render(cw_report_markdown, &x.r);
    cr_expect(strstr(out, "```\n#0  0x"), "%s", out);
    cr_expect(strstr(out, " in site_accept "), "%s", out);
    cr_expect(strstr(out, "tests/test_formats.c:"), "%s", out);
    free(out);
    fx_fini(&x);
    free(m.base);
}

/* The fingerprint follows the function names, not the addresses. */
Test(formats, sarif_fingerprint_follows_functions)
{
    struct fx x;
    fx_init(&x);
    struct mem_ring m;
    struct cw_process *p = symbolized_proc(&x, &m);
    add_finding(&x.a, p, CW_K_CLOSE_WAIT, 7)->open_stack = 1;
    add_finding(&x.a, p, CW_K_CLOSE_WAIT, 8)->open_stack = 2;
    char *out = render(cw_report_sarif, &x.r);
    struct jv *v = parse_or_fail(out);
    const char *a = jstr(v, "runs.0.results.0.partialFingerprints.closewatch/v1");
    const char *b = jstr(v, "runs.0.results.1.partialFingerprints.closewatch/v1");
    cr_assert(a && b, "%s", out);
    cr_expect_str_neq(a, b);
    jfree(v);
    free(out);
    fx_fini(&x);
    free(m.base);
}

/* ---- suppressions ---------------------------------------------------------- */

static char *write_file(const char *dir, const char *name, const char *text)
{
    char *path = malloc(512);
    snprintf(path, 512, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

Test(formats, suppressions_load_rules_and_comments)
{
    char *dir = h_mkdtemp("sup");
    char *path = write_file(dir, "ok.supp",
                            "# known leaks\n"
                            "\n"
                            "close_wait:pool_checkout\n"
                            "   socket :  */libpq.so*   \n"
                            "late_close:idle_reaper # bug 123\n"
                            "double_close:ns::Conn::~Conn\n");
    struct cw_suppressions s;
    char err[512] = "";
    cr_assert_eq(cw_suppressions_load(&s, path, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s.n, 4);
    cr_expect_eq(s.v[0].kind, CW_K_CLOSE_WAIT);
    cr_expect_str_eq(s.v[0].pattern, "pool_checkout");
    cr_expect_eq(s.v[0].line, 3);
    cr_expect_eq(s.v[1].kind, -1);
    cr_expect_str_eq(s.v[1].pattern, "*/libpq.so*");
    cr_expect_eq(s.v[2].kind, CW_K_LATE_CLOSE);
    cr_expect_str_eq(s.v[2].pattern, "idle_reaper");
    cr_expect_str_eq(s.v[3].pattern, "ns::Conn::~Conn", "only the first colon splits");
    cr_expect_eq(s.v[3].hits, 0);
    cr_expect_str_eq(s.path, path);
    cw_suppressions_free(&s);
    free(path);
    h_rmdir(dir);
    free(dir);
}

Test(formats, suppressions_unknown_kind_names_file_and_line)
{
    char *dir = h_mkdtemp("sup");
    char *path = write_file(dir, "bad.supp", "# ok\nclose_wait:foo\nxyz:bar\n");
    struct cw_suppressions s;
    char err[512] = "", want[1024];
    cr_expect_eq(cw_suppressions_load(&s, path, err, sizeof err), -1);
    snprintf(want, sizeof want,
             "%s:3: unknown kind 'xyz' (expected close_wait, late_close, eof_spin, double_close, "
             "emfile, untracked, open_at_exit or socket)",
             path);
    cr_expect_str_eq(err, want);
    cr_expect_eq(s.n, 0, "rules of a rejected file were kept");
    free(path);
    h_rmdir(dir);
    free(dir);
}

Test(formats, suppressions_missing_colon_names_file_and_line)
{
    char *dir = h_mkdtemp("sup");
    char *path = write_file(dir, "bad.supp", "\nclose_wait_foo\n");
    struct cw_suppressions s;
    char err[512] = "", want[600];
    cr_expect_eq(cw_suppressions_load(&s, path, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:2: expected KIND:PATTERN", path);
    cr_expect_str_eq(err, want);
    free(path);

    path = write_file(dir, "empty_pattern.supp", "close_wait:   \n");
    cr_expect_eq(cw_suppressions_load(&s, path, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:1: expected KIND:PATTERN", path);
    cr_expect_str_eq(err, want);
    free(path);
    h_rmdir(dir);
    free(dir);
}

Test(formats, suppressions_unreadable_file)
{
    struct cw_suppressions s;
    char err[512] = "";
    cr_expect_eq(cw_suppressions_load(&s, "/nonexistent/cw.supp", err, sizeof err), -1);
    cr_expect_str_eq(err, "/nonexistent/cw.supp: cannot open: No such file or directory");
}

/* A rule matches a frame's function, file path or basename, or module
 * basename; a double close is judged by its close stack. */
Test(formats, suppressions_apply_matches_frames)
{
    struct fx x;
    fx_init(&x);
    struct mem_ring m;
    struct cw_process *p = symbolized_proc(&x, &m);
    char *dir = h_mkdtemp("sup");
    char module_rule[300];
    snprintf(module_rule, sizeof module_rule,
             "close_wait:site_acc?pt\n"            /* function */
             "eof_spin:test_formats.c\n"           /* file basename */
             "late_close:*/tests/test_formats.c\n" /* file path */
             "open_at_exit:%s\n"                   /* module basename */
             "double_close:site_accept\n",
             strrchr(p->modules[0].path, '/') + 1);
    char *path = write_file(dir, "frames.supp", module_rule);
    char err[512] = "";
    cr_assert_eq(cw_suppressions_load(&x.sup, path, err, sizeof err), 0, "%s", err);
    static const enum cw_kind kinds[] = {CW_K_CLOSE_WAIT,   CW_K_EOF_SPIN,     CW_K_LATE_CLOSE,
                                         CW_K_OPEN_AT_EXIT, CW_K_DOUBLE_CLOSE, CW_K_DOUBLE_CLOSE};
    for (int i = 0; i < 6; i++)
        add_finding(&x.a, p, kinds[i], 20 + i)->open_stack = 1;
    x.a.findings[4].close_stack = 2; /* closed twice in site_read: no match */
    x.a.findings[5].close_stack = 1;
    apply_suppressions(&x);
    for (int i = 0; i < 4; i++)
        cr_expect_eq(x.a.findings[i].suppressed, i + 1, "finding %d (%s)", i,
                     cw_kind_name(kinds[i]));
    cr_expect_eq(x.a.findings[4].suppressed, 0, "matched the open stack of a double close");
    cr_expect_eq(x.a.findings[5].suppressed, 5);
    for (int i = 0; i < 5; i++)
        cr_expect_eq(x.sup.v[i].hits, 1, "rule %d", i);
    free(path);
    h_rmdir(dir);
    free(dir);
    fx_fini(&x);
    free(m.base);
}

Test(formats, suppressions_apply_matches_program)
{
    struct fx x;
    fx_init(&x);
    char *dir = h_mkdtemp("sup");
    char *path = write_file(dir, "java.supp",
                            "eof_spin:*/java\n"     /* kind differs: no hit */
                            "close_wait:*/java\n"   /* full path */
                            "socket:leaky_s?rver\n" /* basename, any kind */
                            "socket:nothing_matches\n");
    char err[512] = "";
    cr_assert_eq(cw_suppressions_load(&x.sup, path, err, sizeof err), 0, "%s", err);
    x.r.sup = &x.sup;
    struct cw_process *java = add_proc(&x.a, 10, "/usr/lib/jvm/bin/java", "java -jar app.jar");
    struct cw_process *leaky = add_proc(&x.a, 11, "/srv/leaky_server", "leaky_server");
    struct cw_process *other = add_proc(&x.a, 12, "/srv/javax", "javax");
    add_finding(&x.a, java, CW_K_CLOSE_WAIT, 7);
    add_finding(&x.a, java, CW_K_DOUBLE_CLOSE, 8);
    add_finding(&x.a, leaky, CW_K_LATE_CLOSE, 9);
    add_finding(&x.a, other, CW_K_CLOSE_WAIT, 10);
    apply_suppressions(&x);

    cr_expect_eq(x.a.findings[0].suppressed, 2);
    cr_expect_eq(x.a.findings[1].suppressed, 0, "double_close matched a close_wait rule");
    cr_expect_eq(x.a.findings[2].suppressed, 3);
    cr_expect_eq(x.a.findings[3].suppressed, 0, "*/java matched /srv/javax");
    cr_expect_eq(x.sup.v[0].hits, 0);
    cr_expect_eq(x.sup.v[1].hits, 1);
    cr_expect_eq(x.sup.v[2].hits, 1);
    cr_expect_eq(x.sup.v[3].hits, 0);
    struct cw_view *view = cw_view_build(&x.a, x.sym, &x.sup);
    cr_expect_eq(view->suppressed, 2);
    cr_expect_eq(view->counts[CW_K_CLOSE_WAIT], 1);
    cr_expect_eq(x.sup.v[1].hits, 1, "a second view counted the hits again");
    cw_view_free(view);

    /* SARIF keeps suppressed findings, marked; Markdown lists the hits. */
    char *out = render(cw_report_sarif, &x.r);
    struct jv *v = parse_or_fail(out);
    cr_assert_eq(jlen(v, "runs.0.results"), 4);
    int unsuppressed = 0;
    char p[128];
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "runs.0.results.%d.suppressions.0.kind", i);
        const char *kind = jstr(v, p);
        unsuppressed += !kind;
        cr_expect(!kind || !strcmp(kind, "external"), "%s", kind);
    }
    cr_expect_eq(unsuppressed, 2);
    jfree(v);
    free(out);
    out = render(cw_report_markdown, &x.r);
    cr_expect(strstr(out, "| close\\_wait:\\*/java | 1 |"), "%s", out);
    cr_expect(strstr(out, "; 2 suppressed"), "%s", out);
    free(out);

    x.r.sup = NULL;
    free(path);
    h_rmdir(dir);
    free(dir);
    fx_fini(&x);
}

/* ---- JUnit ------------------------------------------------------------------ */

/* Parses xml with Python's XML parser (a real one, strict about
 * well-formedness) and returns what the script printed; NULL if the
 * document did not parse. */
static char *python_xml(const char *xml, const char *script)
{
    char dir_tmpl[] = "/tmp/cwtest-junit-XXXXXX";
    char *dir = mkdtemp(dir_tmpl);
    cr_assert_not_null(dir);
    char path[128], cmd[2048];
    snprintf(path, sizeof path, "%s/report.xml", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(xml, f);
    fclose(f);
    snprintf(cmd, sizeof cmd,
             "python3 -c 'import sys, xml.etree.ElementTree as E\n"
             "r = E.parse(sys.argv[1]).getroot()\n%s' %s 2>&1",
             script, path);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    char *out = calloc(1, 65536);
    size_t n = fread(out, 1, 65535, p);
    out[n] = 0;
    int st = pclose(p);
    unlink(path);
    rmdir(dir);
    if (st != 0) {
        cr_log_error("python: %s", out);
        free(out);
        return NULL;
    }
    return out;
}

Test(formats, junit_one_case_per_group_failed_for_errors)
{
    if (system("command -v python3 >/dev/null 2>&1") != 0)
        cr_skip_test("python3 (the XML parser this test uses) is not installed");
    struct fx x;
    fx_init(&x);
    scene(&x);
    char *out = render(cw_report_junit, &x.r);
    char *got = python_xml(out, "print(r.tag, r.get(\"tests\"), r.get(\"failures\"))\n"
                                "for c in r.iter(\"testcase\"):\n"
                                "  print(c.get(\"classname\"), c.find(\"failure\") is not None)");
    cr_assert_not_null(got, "not well-formed XML:\n%s", out);
    /* Four groups (two CLOSE_WAIT sockets share one), the info one passes. */
    cr_expect(!strncmp(got, "testsuites 4 3\n", 15), "%s", got);
    cr_expect(strstr(got, "closewatch.close_wait True\n"), "%s", got);
    cr_expect(strstr(got, "closewatch.double_close True\n"), "%s", got);
    cr_expect(strstr(got, "closewatch.open_at_exit False\n"), "%s", got);
    free(got);
    free(out);
    fx_fini(&x);

    /* Names with markup, quotes, control characters and bad UTF-8 stay well-formed. */
    fx_init(&x);
    nasty_scene(&x);
    out = render(cw_report_junit, &x.r);
    got = python_xml(out, "print(r.find(\"testsuite/testcase/failure\").text.splitlines()[0])");
    cr_assert_not_null(got, "not well-formed XML:\n%s", out);
    cr_expect(strstr(got, "we|ird \"dir\"\\x\n"), "%s", got);
    free(got);
    free(out);
    fx_fini(&x);

    /* A clean run is one passing case: the CI shows the check ran. */
    fx_init(&x);
    add_proc(&x.a, 99, "/usr/bin/good", "good");
    out = render(cw_report_junit, &x.r);
    got = python_xml(out, "print(r.get(\"tests\"), r.get(\"failures\"))");
    cr_assert_not_null(got, "%s", out);
    cr_expect_str_eq(got, "1 0\n");
    free(got);
    free(out);
    fx_fini(&x);
}

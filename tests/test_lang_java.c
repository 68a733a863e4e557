/*
 * test_lang_java.c - Java frames in the stacks of real Java programs
 * (OpenJDK's java, single-file source launch; preload/jframes.c): the
 * thread-per-connection server of tests/real/JavaServer.java that leaks
 * every connection has findings whose open stacks name its accept() line
 * in JavaServer.java (JSON frames of language "java", the text report's
 * "where:"), its correct variant has none, a post-mortem after SIGKILL still
 * names the file; pooling clients (HttpURLConnection's keep-alive cache,
 * Apache HttpClient 4's pool) whose server closed the idle connection have
 * a finding naming the client's request line; a
 * program that opens thousands of sockets prints and exits the same with
 * and without the preload, and nothing is written on its stderr; a C
 * program that opens a socket before it creates a JVM gets a report saying
 * so, and Java frames for the sockets Java opens after, also when it
 * dlopen()s libjvm. Lines are found by
 * their markers in the sources, not copied from output.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "jsonq.h"

#define COND_MS 30000

static const char *source(const char *name)
{
    static char p[2][1024];
    static int k;
    char rel[1100];
    snprintf(rel, sizeof rel, "%s/../tests/real/%s", h_build(), name);
    char *out = p[k++ % 2];
    cr_assert(realpath(rel, out), "cannot find %s", rel);
    return out;
}

static void need_java(void)
{
    if (system("java -version >/dev/null 2>&1") != 0)
        cr_skip_test("java is not installed here (scripts/install-test-deps.sh java)");
}

/* A program with a pipe on its stdin (closed to make it exit), its stdout
 * captured and, if err_fd, its stderr too. */
static struct h_piped start(char *const argv[], int preload, const char *dir)
{
    static const char *const runtime_options[] = {"JAVA_TOOL_OPTIONS", "JDK_JAVA_OPTIONS", NULL};
    return h_spawn_piped(argv, preload ? dir : NULL, runtime_options, 1);
}

/* The live report of the rings in dir for pid, once it has n findings. */
static struct jv *live_findings(const char *dir, pid_t pid, int n)
{
    char dirarg[700], pidarg[16];
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(pidarg, sizeof pidarg, "%d", (int)pid);
    uint64_t end = h_now_ms() + COND_MS;
    char *out = NULL;
    for (;;) {
        char *args[] = {"report", "--format=json", "--grace=0.2", dirarg, pidarg, NULL};
        free(out);
        h_closewatch(dir, args, &out);
        char err[256];
        struct jv *doc = jq_parse(out, err, sizeof err);
        cr_assert_not_null(doc, "%s: %s", err, out);
        if (jq_len(doc, "findings") == n) {
            free(out);
            return doc;
        }
        jq_free(doc);
        cr_assert_lt(h_now_ms(), end, "no %d findings: %s", n, out);
        usleep(100 * 1000); /* polling a condition: the grace must pass */
    }
}

/* Whether stack (a JSON array) has a java frame of a function starting
 * with fn_prefix in file at line. */
static int has_java_line(const struct jv *stack, const char *fn_prefix, const char *file, int line)
{
    for (int i = 0; i < jq_len(stack, NULL); i++) {
        char p[32];
        snprintf(p, sizeof p, "%d", i);
        const struct jv *f = jq_get(stack, p);
        const char *ff = jq_str(f, "file"), *lang = jq_str(f, "language"),
                   *fn = jq_str(f, "function");
        if (ff && lang && fn && !strcmp(ff, file) && !strcmp(lang, "java") &&
            !strncmp(fn, fn_prefix, strlen(fn_prefix)) && jq_num(f, "line") == line)
            return 1;
    }
    return 0;
}

/* JavaServer.java in mode leak|good (blocking) run by java (a path, or
 * "java") under plain LD_PRELOAD, with `sessions` echo sessions done. */
static struct h_piped server_of(const char *java, const char *dir, const char *mode, int sessions)
{
    char *argv[] = {(char *)java, (char *)source("JavaServer.java"), (char *)mode, "blocking",
                    NULL};
    struct h_piped g = start(argv, 1, dir);
    char line[256];
    cr_assert(h_read_line(&g.p, line, sizeof line, COND_MS), "java did not start");
    cr_assert(!strncmp(line, "listening ", 10), "%s", line);
    int port = atoi(line + 10);
    for (int i = 0; i < sessions; i++)
        h_echo_session(port, 0);
    return g;
}

static struct h_piped server(const char *dir, const char *mode, int sessions)
{
    return server_of("java", dir, mode, sessions);
}

static void stop(struct h_piped *g, const char *bye)
{
    close(g->in_fd);
    char line[256];
    cr_assert(h_read_line(&g->p, line, sizeof line, COND_MS), "no goodbye");
    cr_assert_str_eq(line, bye);
    int st = h_wait(&g->p, COND_MS);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "java ended with status %#x", st);
    close(g->err_fd);
}

Test(lang_java, leaking_server_findings_name_the_accept_line, .timeout = 120)
{
    need_java();
    char *dir = h_mkdtemp("langjava");
    struct h_piped g = server(dir, "leak", 3);
    int accept_line = h_marker_line(source("JavaServer.java"), "cw:java-accept");
    struct jv *live = live_findings(dir, g.p.pid, 3);
    for (int i = 0; i < 3; i++) {
        char path[64];
        snprintf(path, sizeof path, "findings.%d.stacks.open", i);
        cr_assert(has_java_line(jq_get(live, path), "JavaServer.", "JavaServer.java", accept_line),
                  "no JavaServer.java:%d in %s", accept_line, path);
        /* The lambda's hidden class is named without its address, which
         * changes from run to run (SARIF fingerprints hash the names). */
        const struct jv *st = jq_get(live, path);
        for (int k = 0; k < jq_len(st, NULL); k++) {
            char kp[16];
            snprintf(kp, sizeof kp, "%d", k);
            const char *fn = jq_str(jq_get(st, kp), "function");
            cr_assert(!fn || !strstr(fn, "$$Lambda") || !strstr(fn, "0x"), "%s", fn);
        }
    }
    jq_free(live);

    /* The text report's headline names the accept line. */
    char dirarg[700], pidarg[16], *out = NULL;
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(pidarg, sizeof pidarg, "%d", (int)g.p.pid);
    char *targs[] = {"report", "--grace=0.2", dirarg, pidarg, NULL};
    cr_assert_eq(h_closewatch(dir, targs, &out), 1, "%s", out);
    char where[128];
    snprintf(where, sizeof where, "  where: opened at JavaServer.java:%d (JavaServer.",
             accept_line);
    cr_assert(strstr(out, where), "no '%s' in:\n%s", where, out);
    free(out);
    stop(&g, "bye");
    h_rmdir(dir);
    free(dir);
}

/* Sockets accepted by pid still open, or -1 until 3 were accepted. */
static int accepted_open(const char *dir, pid_t pid)
{
    struct cw_ring r;
    h_open_ring(&r, dir, pid);
    struct cw_ring_iter it;
    struct cw_event ev;
    int accepted = 0, open = 0;
    cw_ring_iter_begin(&r, &it);
    while (cw_ring_iter_next(&r, &it, &ev))
        accepted += ev.type == CW_EV_OPEN && cw_open_arg_origin(ev.arg0) == CW_ORIGIN_ACCEPT;
    for (uint32_t fd = 0; fd < r.hdr.fd_cap; fd++) {
        struct cw_fd_entry e;
        if (cw_ring_fd(&r, fd, &e) && (e.sid & CW_SID_OPEN) && e.origin == CW_ORIGIN_ACCEPT)
            open++;
    }
    cw_ring_close(&r);
    return accepted < 3 ? -1 : open;
}

/* The JDKs installed besides the default one (Temurin 21, 25 ...). */
Test(lang_java, other_jdks_name_the_accept_line, .timeout = 180)
{
    need_java();
    char def[1024] = "", line[1100];
    FILE *f = popen("readlink -f \"$(command -v java)\"", "r");
    cr_assert(f && fgets(def, sizeof def, f));
    pclose(f);
    f = popen("ls -d /usr/lib/jvm/*/bin/java 2>/dev/null | xargs -r readlink -f | sort -u", "r");
    int tried = 0;
    while (f && fgets(line, sizeof line, f)) {
        if (!strcmp(line, def))
            continue;
        line[strcspn(line, "\n")] = 0;
        cr_log_info("%s", line);
        char *dir = h_mkdtemp("langjavajdk");
        struct h_piped g = server_of(line, dir, "leak", 2);
        int accept_line = h_marker_line(source("JavaServer.java"), "cw:java-accept");
        struct jv *live = live_findings(dir, g.p.pid, 2);
        for (int i = 0; i < 2; i++) {
            char path[64];
            snprintf(path, sizeof path, "findings.%d.stacks.open", i);
            cr_assert(
                has_java_line(jq_get(live, path), "JavaServer.", "JavaServer.java", accept_line),
                "%s: no JavaServer.java:%d in %s", line, accept_line, path);
        }
        jq_free(live);
        stop(&g, "bye");
        h_rmdir(dir);
        free(dir);
        tried++;
    }
    if (f)
        pclose(f);
    if (!tried)
        cr_skip_test("no JDK here besides the default one (/usr/lib/jvm/*/bin/java)");
}

Test(lang_java, correct_server_has_no_findings, .timeout = 120)
{
    need_java();
    char *dir = h_mkdtemp("langjavagood");
    struct h_piped g = server(dir, "good", 3);
    /* Every accepted socket closed (3 accepts in the events, none open
     * in the fd table), then past the grace: a leak would be a finding. */
    for (uint64_t end = h_now_ms() + COND_MS;; usleep(50 * 1000) /* polling a condition */) {
        cr_assert_lt(h_now_ms(), end, "the server did not close its 3 sockets");
        if (accepted_open(dir, g.p.pid) == 0)
            break;
    }
    usleep(300 * 1000); /* past the grace (0.2 s): a leak would be a finding now */
    char dirarg[700], pidarg[16], *out = NULL;
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(pidarg, sizeof pidarg, "%d", (int)g.p.pid);
    char *args[] = {"report", "--grace=0.2", dirarg, pidarg, NULL};
    cr_assert_eq(h_closewatch(dir, args, &out), 0, "%s", out);
    cr_assert(strstr(out, "SUMMARY: closewatch: no leaked sockets"), "%s", out);
    free(out);
    stop(&g, "bye");
    h_rmdir(dir);
    free(dir);
}

/* Open sockets of pid's ring that its sampler has seen in CLOSE_WAIT. */
static int ring_close_wait(const char *dir, pid_t pid)
{
    struct cw_ring r;
    h_open_ring(&r, dir, pid);
    int n = 0;
    for (uint32_t fd = 0; fd < r.hdr.fd_cap && fd < 1024; fd++) {
        struct cw_fd_entry e;
        n += cw_ring_fd(&r, fd, &e) && (e.sid & CW_SID_OPEN) && e.close_wait_ns;
    }
    cw_ring_close(&r);
    return n;
}

Test(lang_java, post_mortem_after_sigkill_names_the_source, .timeout = 120)
{
    need_java();
    char *dir = h_mkdtemp("langjavakill");
    struct h_piped g = server(dir, "leak", 2);
    uint64_t end = h_now_ms() + COND_MS;
    /* Nothing read the EOFs: only the sampler's sight of CLOSE_WAIT dates
     * the FINs in the ring, so the kill waits for it (the kernel's view
     * dies with the process). */
    while (ring_close_wait(dir, g.p.pid) < 2) {
        cr_assert_lt(h_now_ms(), end, "the sampler never saw the leaked sockets in CLOSE_WAIT");
        usleep(20 * 1000); /* polling a condition */
    }
    kill(g.p.pid, SIGKILL);
    int st = h_wait(&g.p, COND_MS);
    cr_assert(WIFSIGNALED(st));
    close(g.in_fd);
    close(g.err_fd);
    int accept_line = h_marker_line(source("JavaServer.java"), "cw:java-accept");
    char dirarg[700], *out = NULL;
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    char *args[] = {"report", "--grace=0", dirarg, NULL};
    h_closewatch(dir, args, &out);
    char where[128];
    snprintf(where, sizeof where, "opened at JavaServer.java:%d (JavaServer.", accept_line);
    cr_assert(strstr(out, where), "no '%s' in:\n%s", where, out);
    cr_assert(strstr(out, "died"), "%s", out);
    free(out);
    h_rmdir(dir);
    free(dir);
}

/* A pooling client (argv, with "PORT" in its place) of ours, whose one
 * request this test answers and whose idle connection it then closes: the
 * finding's open stack names the request's line (marker) in file, in a
 * function starting with fn. */
static void pooled_client(char **argv, const char *file, const char *fn, const char *marker)
{
    char *dir = h_mkdtemp("langjavacli");
    int port;
    int lfd = h_listen(&port);
    char port_arg[16];
    snprintf(port_arg, sizeof port_arg, "%d", port);
    for (char **a = argv; *a; a++)
        if (!strcmp(*a, "PORT"))
            *a = port_arg;
    struct h_piped g = start(argv, 1, dir);
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, COND_MS), 1, "the client did not connect");
    int conn = accept(lfd, NULL, NULL);
    cr_assert_geq(conn, 0);
    char buf[4096];
    size_t n = 0;
    buf[0] = 0;
    while (n < sizeof buf - 1 && !strstr(buf, "\r\n\r\n")) {
        ssize_t r = h_read_deadline(conn, buf + n, sizeof buf - 1 - n, COND_MS);
        cr_assert_gt(r, 0, "no request");
        n += (size_t)r;
        buf[n] = 0;
    }
    static const char resp[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                               "Connection: keep-alive\r\nKeep-Alive: timeout=60\r\n\r\nok";
    cr_assert_eq(write(conn, resp, sizeof resp - 1), (ssize_t)(sizeof resp - 1));
    char line[256];
    cr_assert(h_read_line(&g.p, line, sizeof line, COND_MS) && !strcmp(line, "idle"), "%s", line);
    close(conn); /* the server closes the idle connection */
    struct jv *live = live_findings(dir, g.p.pid, 1);
    int req_line = h_marker_line(source(file), marker);
    cr_assert(has_java_line(jq_get(live, "findings.0.stacks.open"), fn, file, req_line),
              "no %s:%d in the client's open stack", file, req_line);
    cr_assert_str_eq(jq_str(live, "findings.0.kind"), "close_wait");
    jq_free(live);
    stop(&g, "bye 2");
    close(lfd);
    h_rmdir(dir);
    free(dir);
}

Test(lang_java, pooled_client_finding_names_the_request_line, .timeout = 120)
{
    need_java();
    char *argv[] = {"java", (char *)source("JavaClient.java"), "PORT", NULL};
    pooled_client(argv, "JavaClient.java", "JavaClient.fetch", "cw:java-request");
}

Test(lang_java, apache_httpclient_pool_finding_names_the_request_line, .timeout = 120)
{
    need_java();
    static const char cp[] = "/usr/share/java/httpclient.jar:/usr/share/java/httpcore.jar:"
                             "/usr/share/java/commons-logging.jar";
    if (access("/usr/share/java/httpclient.jar", R_OK) ||
        access("/usr/share/java/httpcore.jar", R_OK))
        cr_skip_test("no Apache HttpClient 4 (scripts/install-test-deps.sh httpclient)");
    char *argv[] = {"java", "-cp", (char *)cp, (char *)source("JavaPoolClient.java"), "PORT", NULL};
    pooled_client(argv, "JavaPoolClient.java", "JavaPoolClient.fetch", "cw:java-pool-request");
}

/* Everything the program wrote on stdout and stderr, and its exit status. */
static int run_all(char *const argv[], int preload, const char *dir, char *out, size_t len,
                   char *err, size_t elen)
{
    struct h_piped g = start(argv, preload, dir);
    close(g.in_fd);
    size_t n = 0;
    for (ssize_t r;
         n < len - 1 && (r = h_read_deadline(g.p.out_fd, out + n, len - 1 - n, COND_MS)) > 0;)
        n += (size_t)r;
    out[n] = 0;
    n = 0;
    for (ssize_t r;
         n < elen - 1 && (r = h_read_deadline(g.err_fd, err + n, elen - 1 - n, COND_MS)) > 0;)
        n += (size_t)r;
    err[n] = 0;
    close(g.err_fd);
    int st = h_wait(&g.p, COND_MS * 2);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(lang_java, thousands_of_sockets_behave_the_same, .timeout = 180)
{
    need_java();
    char *dir = h_mkdtemp("langjavachurn");
    char *argv[] = {"java", (char *)source("JavaChurn.java"), "3000", NULL};
    char plain_out[256], cw_out[256], plain_err[4096], cw_err[4096];
    int a = run_all(argv, 0, NULL, plain_out, sizeof plain_out, plain_err, sizeof plain_err);
    int b = run_all(argv, 1, dir, cw_out, sizeof cw_out, cw_err, sizeof cw_err);
    cr_assert_eq(a, 0, "%s%s", plain_out, plain_err);
    cr_assert_eq(b, a);
    cr_assert_str_eq(cw_out, plain_out);
    cr_assert_str_eq(cw_err, plain_err, "the preload changed stderr");
    cr_assert_str_eq(plain_out, "done 3000 188484\n");
    /* And it recorded them, with Java frames. */
    struct cw_ring r;
    h_open_ring(&r, dir, 0);
    cr_assert_geq(r.hdr.next_sid, 6000);
    struct cw_runtime rt;
    cr_assert(cw_ring_runtime(&r, CW_LANG_JAVA, &rt), "no Java runtime record");
    cr_assert_eq(rt.status, CW_RT_WALKED, "%s: %s", rt.name, rt.reason);
    cw_ring_close(&r);
    h_rmdir(dir);
    free(dir);
}

/* The JDK of the java on the PATH (bin/java's grandparent), or NULL. */
static const char *jdk_home(void)
{
    static char home[1024];
    FILE *f = popen("readlink -f \"$(command -v java)\"", "r");
    if (!f)
        return NULL;
    int ok = fgets(home, sizeof home, f) != NULL;
    pclose(f);
    char *bin = ok ? strstr(home, "/bin/java") : NULL;
    if (!bin)
        return NULL;
    *bin = 0;
    return home;
}

/* jvm_embed.c built against the JDK (linked with libjvm, or not), run
 * under the preload (else told to dlopen libjvm); *dir its ring dir. */
static struct h_piped embed(int linked, char **dir)
{
    const char *jdk = jdk_home();
    char hdr[1100], cmd[6000], exe[700], libdir[1100], libjvm[1200], link[2600] = "";
    cr_assert_not_null(jdk, "cannot find the JDK of java");
    snprintf(hdr, sizeof hdr, "%s/include/jni.h", jdk);
    if (access(hdr, R_OK) != 0)
        cr_skip_test("no %s: the JDK's headers are not installed", hdr);
    *dir = h_mkdtemp("langjavaembed");
    snprintf(exe, sizeof exe, "%s/jvm_embed", *dir);
    snprintf(libdir, sizeof libdir, "%s/lib/server", jdk);
    snprintf(libjvm, sizeof libjvm, "%s/libjvm.so", libdir);
    if (linked)
        snprintf(link, sizeof link, "-DLINKED -L%s -Wl,-rpath,%s -ljvm", libdir, libdir);
    snprintf(cmd, sizeof cmd,
             "cc -std=gnu11 -Wall -Werror -I%s/include -I%s/include/linux -o %s %s %s -ldl", jdk,
             jdk, exe, source("jvm_embed.c"), link);
    cr_assert_eq(system(cmd), 0, "%s failed", cmd);
    char *argv[] = {exe, linked ? NULL : "dlopen", libjvm, NULL};
    struct h_piped g = start(argv, 1, *dir);
    char line[256];
    cr_assert(h_read_line(&g.p, line, sizeof line, COND_MS), "jvm_embed did not start");
    cr_assert_str_eq(line, "ready");
    return g;
}

/* How many open sockets of pid have java.net.ServerSocket.<init> among
 * their Java frames. */
static int server_sockets_with_java_frames(const char *dir, pid_t pid)
{
    struct cw_ring r;
    h_open_ring(&r, dir, pid);
    int n = 0;
    for (uint32_t fd = 0; fd < r.hdr.fd_cap; fd++) {
        struct cw_fd_entry e;
        struct cw_lang_frame lf[CW_LANG_DEPTH];
        unsigned lang = 0;
        int trunc = 0, found = 0;
        if (!cw_ring_fd(&r, fd, &e) || !(e.sid & CW_SID_OPEN) || !e.open_stack)
            continue;
        uint32_t lid = cw_ring_stack_lang(&r, e.open_stack);
        int k = lid ? cw_ring_lang_stack(&r, lid, lf, CW_LANG_DEPTH, &lang, &trunc) : 0;
        for (int i = 0; i < k && lang == CW_LANG_JAVA && !found; i++) {
            struct cw_code c;
            found =
                cw_ring_code(&r, lf[i].code, &c) &&
                !strcmp((const char *)cw_ring_blob(&r, c.name_off), "java.net.ServerSocket.<init>");
        }
        n += found;
    }
    cw_ring_close(&r);
    return n;
}

static void embed_stop(struct h_piped *g, char *dir)
{
    close(g->in_fd);
    int st = h_wait(&g->p, COND_MS);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "jvm_embed ended with status %#x", st);
    close(g->err_fd);
    h_rmdir(dir);
    free(dir);
}

Test(lang_java, sockets_before_the_jvm_was_found_are_reported, .timeout = 120)
{
    need_java();
    char *dir;
    struct h_piped g = embed(1, &dir);
    char dirarg[700], pidarg[16], *out = NULL;
    snprintf(dirarg, sizeof dirarg, "--dir=%s", dir);
    snprintf(pidarg, sizeof pidarg, "%d", (int)g.p.pid);
    char *args[] = {"report", "--format=json", dirarg, pidarg, NULL};
    h_closewatch(dir, args, &out);
    char err[256];
    struct jv *doc = jq_parse(out, err, sizeof err);
    cr_assert_not_null(doc, "%s: %s", err, out);
    const char *note = jq_str(doc, "processes.0.runtime_note");
    /* Ours at least; the JVM may make its own while it starts: those too. */
    cr_assert(note && strstr(note, "recorded before the JVM was found (native frames only)"),
              "runtime_note: %s", note ? note : "(none)");
    jq_free(doc);
    free(out);
    cr_assert_eq(server_sockets_with_java_frames(dir, g.p.pid), 2);
    embed_stop(&g, dir);
}

Test(lang_java, a_jvm_dlopened_by_a_c_program_is_found, .timeout = 120)
{
    need_java();
    char *dir;
    struct h_piped g = embed(0, &dir);
    cr_assert_eq(server_sockets_with_java_frames(dir, g.p.pid), 2);
    embed_stop(&g, dir);
}

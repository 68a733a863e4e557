/*
 * test_ring_life.c - when a process gets a ring file and when it does not
 * (suite ring_life): recording starts at the first socket, so a process or
 * an exec'd image that never has one leaves nothing behind; an image that
 * inherits a socket across exec makes its ring at start and finds it; a
 * ring becomes visible only once it is complete, however early the process
 * is killed.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <sys/socket.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "recorder_util.h"

/* Every entry of dir but . and .. (ring files and anything else). */
static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void run_sh(const char *dir, const char *script)
{
    char *argv[] = {"/bin/sh", "-c", (char *)script, NULL};
    struct h_proc p = h_spawn(argv, NULL, 1, dir, 0);
    wait_exit_ok(&p, 20000);
}

Test(ring_life, socketless_processes_and_exec_chains_leave_no_ring, .timeout = 30,
     .fini = drop_test_dir)
{
    char *dir = test_dir("life-none");
    /* Children, and an exec chain sh -> sh -> true, none with a socket. */
    run_sh(dir, "for i in 1 2 3 4 5; do /bin/true; done; exec /bin/sh -c 'exec /bin/true'");
    cr_assert_eq(entries(dir), 0, "%d files left by processes that never had a socket",
                 entries(dir));
}

/* bash opens a TCP socket for `exec 3<>/dev/tcp/...` without CLOEXEC; the
 * image it execs inherits fd 3 and must record it at start. */
Test(ring_life, socket_inherited_across_exec_gets_a_ring, .timeout = 30, .fini = drop_test_dir)
{
    if (access("/bin/bash", X_OK) != 0)
        cr_skip_test("needs /bin/bash for its /dev/tcp redirection");
    char *dir = test_dir("life-exec");
    int port;
    int lfd = h_listen(&port);
    char script[256];
    snprintf(script, sizeof script,
             "exec 3<>/dev/tcp/127.0.0.1/%d; exec /bin/sh -c 'echo held; read x <&3'", port);
    char *argv[] = {"/bin/bash", "-c", script, NULL};
    struct h_proc p = h_spawn(argv, NULL, 1, dir, 1);
    int conn = accept(lfd, NULL, NULL);
    cr_assert_geq(conn, 0);
    expect_line(&p, "held");

    char paths[4][512];
    cr_assert_eq(h_rings(dir, p.pid, paths, 4), 2, "bash's image and the sh it exec'd");
    struct cw_ring r;
    char err[512];
    cr_assert_eq(cw_ring_open(&r, paths[1], err, sizeof err), CW_RING_OK, "%s", err);
    cr_assert_eq(r.hdr.image_seq, 1);
    struct cw_fd_entry e = fd_entry(&r, 3);
    cr_assert(entry_open(&e), "fd 3 not recorded open in the exec'd image");
    cr_assert_eq(e.origin, CW_ORIGIN_INHERITED, "origin %s", cw_origin_name(e.origin));
    cw_ring_close(&r);

    cr_assert_eq(write(conn, "x\n", 2), 2);
    wait_exit_ok(&p, 10000);
    close(conn);
    close(lfd);
}

/* A process killed at any moment of its start leaves either no ring or a
 * complete one: never an empty or all-zero file. */
Test(ring_life, killed_during_start_up_leaves_no_uninitialised_ring, .timeout = 120,
     .fini = drop_test_dir)
{
    enum { RUNS = 150 };
    char *dir = test_dir("life-kill");
    int port;
    int lfd = h_listen(&port); /* never accepted: the backlog is enough */
    char arg[16];
    snprintf(arg, sizeof arg, "%d", port);
    srand((unsigned)time(NULL));
    int made = 0;
    for (int i = 0; i < RUNS; i++) {
        /* socket() is the first thing it does: the ring is made then. Its
         * control fd is stdin, at EOF at once: it may also exit by itself. */
        char *argv[] = {(char *)FIXTURE("idle_client"), arg, "0", NULL};
        struct h_proc p = h_spawn(argv, NULL, 1, dir, 0);
        struct timespec ts = {0, (long)(rand() % 8000) * 1000L};
        nanosleep(&ts, NULL); /* a random moment to kill at, not a wait */
        kill(p.pid, SIGKILL);
        h_wait(&p, 10000);
        char paths[4][512];
        int n = h_rings(dir, p.pid, paths, 4);
        for (int k = 0; k < n; k++) {
            struct cw_ring r;
            char err[512];
            int rc = cw_ring_open(&r, paths[k], err, sizeof err);
            cr_assert_eq(rc, CW_RING_OK, "run %d: %s: %s", i, paths[k], err);
            cw_ring_close(&r);
            unlink(paths[k]);
            made++;
        }
        cr_assert_eq(entries(dir), 0, "run %d left a file that is not a ring", i);
    }
    cr_log_info("%d of %d killed processes had made their ring", made, RUNS);
    close(lfd);
}

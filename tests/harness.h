/*
 * harness.h - what the Criterion tests share: where the build is, running
 * programs with and without the preload in a private ring directory,
 * waiting for conditions instead of sleeping, and finding ring files.
 */
#ifndef CW_TEST_HARNESS_H
#define CW_TEST_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "../common/shm_reader.h"

/* Absolute path of build/ (from $CW_BUILD, set by `make test`). */
const char *h_build(void);
/* build/<rel>, in a static rotating buffer. */
const char *h_path(const char *rel);

/* A fresh private directory for ring files; removed by h_rmdir. */
char *h_mkdtemp(const char *tag);
void h_rmdir(const char *dir);

struct h_proc {
    pid_t pid;
    int out_fd; /* read end of the child's stdout, or -1 */
};

/*
 * Starts argv[0] (a path) with extra environment entries ("K=V", NULL-ended).
 * With preload != 0, LD_PRELOAD is build/libclosewatch.so and CLOSEWATCH_DIR
 * is ring_dir. stdout is captured when capture != 0.
 */
struct h_proc h_spawn(char *const argv[], char *const env[], int preload, const char *ring_dir,
                      int capture);
/* A program with its stdin and stdout (and stderr, when asked) on pipes. */
struct h_piped {
    struct h_proc p; /* p.out_fd: its stdout */
    int in_fd;       /* its stdin: closing it is EOF there */
    int err_fd;      /* its stderr, or -1 (then inherited) */
};
/* Starts argv (PATH searched) so; with the preload when ring_dir is given
 * (rings there); the environment variables named in unset (NULL-ended, or
 * NULL) removed: a runtime's own options would change what is tested. */
struct h_piped h_spawn_piped(char *const argv[], const char *ring_dir, const char *const unset[],
                             int pipe_err);

/* Waits up to timeout_ms; returns the wait status, or -1 on timeout (child killed). */
int h_wait(struct h_proc *p, int timeout_ms);
/* Reads one line from the child's stdout (without '\n'); 0 on EOF/timeout. */
int h_read_line(struct h_proc *p, char *buf, size_t len, int timeout_ms);

/*
 * The control pipe of tests/fixtures/fixture.h: the fixture gets the read
 * end's number (arg) on its command line and runs until the test closes the
 * write end. Only the read end may be inherited, or the fixture would hold
 * its own pipe open forever: h_ctl_spawned closes the test's copy of it
 * once the fixture has its own, h_ctl_release lets the fixture go on.
 */
struct h_ctl {
    int rd, wr;
    char arg[16];
};
void h_ctl_open(struct h_ctl *c);
void h_ctl_spawned(struct h_ctl *c);
void h_ctl_release(struct h_ctl *c);

/* Runs build/closewatch with args (NULL-ended) to completion, its stdout
 * (through a file in dir) in *out (malloc'd); returns its exit status. */
int h_closewatch(const char *dir, char *const args[], char **out);
/* The 1-based number of the first line of file path holding marker (fails
 * the test if there is none): tests find source lines this way rather than
 * copying them from the tool's output. */
int h_marker_line(const char *path, const char *marker);

/* A pyenv CPython of minor version X.Y ($PYENV_ROOT or ~/.pyenv), or NULL;
 * the path is in a static buffer the next call reuses. */
const char *h_pyenv_python(const char *minor);

/* CLOCK_MONOTONIC in ms, for deadlines. */
uint64_t h_now_ms(void);
/* A whole file, NUL-terminated (length in *len if len); NULL if unreadable. */
char *h_slurp(const char *path, size_t *len);

/* Polls cond(arg) every millisecond until it holds or timeout_ms passes. */
int h_wait_for(int (*cond)(void *), void *arg, int timeout_ms);

/* Paths of ring files in dir for pid (pid 0: all), sorted; returns count. */
int h_rings(const char *dir, pid_t pid, char paths[][512], int max);
/* Opens the only/first ring of pid in dir, failing the test if absent. */
void h_open_ring(struct cw_ring *r, const char *dir, pid_t pid);

/* A TCP listener on 127.0.0.1 with an ephemeral port; returns fd, sets *port. */
int h_listen(int *port);
int h_connect(int port);
/* read() once data is there, failing the test after ms without any. */
ssize_t h_read_deadline(int fd, void *buf, size_t n, int ms);
/* One echo session with a line-echoing server on 127.0.0.1:port: connect,
 * send a line, read it back, send our FIN. With wait_close, also wait for
 * the server's FIN (nothing left in CLOSE_WAIT); without, close and leave. */
void h_echo_session(int port, int wait_close);
/* How many TCP sockets the kernel shows pid holding in CLOSE_WAIT (0 if
 * it cannot be asked). */
int h_kernel_close_wait(int pid);

#endif

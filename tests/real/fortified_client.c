/*
 * fortified_client.c - a C client for the `real` suite (tests/test_real.c),
 * built by the test with -O2 -D_FORTIFY_SOURCE=2, so that its reads into
 * fixed-size buffers with a length known only at run time go through
 * glibc's __read_chk and __recv_chk instead of read and recv.
 *
 *     fortified_client PORT READ-SIZE leak|good
 *
 * Connects twice, prints "connected", reads the first connection with
 * read() and the second with recv() until the server closes them, prints
 * "eof", and exits when stdin reaches EOF. `good` closes both at EOF; the
 * bug in `leak` is the classic one: EOF ends the loop, nothing closes.
 *
 * (tests/fixtures/fortified_client always closes, so it has no leaking
 * variant to compare with: hence this program.)
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        perror("connect");
        exit(1);
    }
    return fd;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: fortified_client PORT READ-SIZE leak|good\n");
        return 2;
    }
    int leak = !strcmp(argv[3], "leak");
    /* Known only at run time, so the compiler cannot prove the reads fit
     * and must call the checking variants (which abort past the buffer:
     * READ-SIZE is at most 64). */
    size_t want = (size_t)atol(argv[2]);
    char buf[64];

    int by_read = dial(atoi(argv[1]));
    int by_recv = dial(atoi(argv[1]));
    printf("connected\n");
    fflush(stdout);
    while (read(by_read, buf, want) > 0)
        ;
    while (recv(by_recv, buf, want, 0) > 0)
        ;
    if (!leak) {
        close(by_read);
        close(by_recv);
    }
    printf("eof\n");
    fflush(stdout);
    while (read(0, buf, want) > 0) /* until the test closes our stdin */
        ;
    return 0;
}

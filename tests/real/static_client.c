/*
 * static_client.c - a statically linked client for tests/test_bpf.c:
 * connects to 127.0.0.1:PORT, reads until the server's FIN, says "eof" and
 * keeps the socket (CLOSE_WAIT) until stdin reaches EOF. LD_PRELOAD never
 * reaches it; the bpf recorder does.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0); /* MARK-SOCKET */
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        return 1;
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    printf("eof\n");
    fflush(stdout);
    while (read(0, buf, sizeof buf) > 0) /* the leak: fd is never closed */
        ;
    return 0;
}

/*
 * main.c - the closewatch command line: dispatches to the subcommands.
 */
#include <stdio.h>
#include <string.h>

#include "dump.h"

static int usage(FILE *out, int status)
{
    fprintf(out, "usage: closewatch dump RING-FILE\n");
    return status;
}

static int cmd_dump(int argc, char **argv)
{
    if (argc != 2)
        return usage(stderr, 2);
    struct cw_ring r;
    char err[512];
    if (cw_ring_open(&r, argv[1], err, sizeof err) != CW_RING_OK) {
        fprintf(stderr, "closewatch: %s\n", err);
        return 2;
    }
    cw_dump(stdout, &r);
    cw_ring_close(&r);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr, 2);
    if (!strcmp(argv[1], "dump"))
        return cmd_dump(argc - 1, argv + 1);
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))
        return usage(stdout, 0);
    fprintf(stderr, "closewatch: unknown command '%s'\n", argv[1]);
    return usage(stderr, 2);
}

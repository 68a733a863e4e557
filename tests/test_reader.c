/*
 * test_reader.c - the ring reader rejects what is not a valid ring.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "harness.h"

Test(reader, rejects_foreign_bytes)
{
    char buf[8192];
    memset(buf, 'x', sizeof buf);
    struct cw_ring r;
    char err[256];
    cr_assert_eq(cw_ring_from_memory(&r, buf, sizeof buf, "junk", err, sizeof err),
                 CW_RING_EFOREIGN);
    cr_assert(strstr(err, "junk: not a closewatch ring"), "%s", err);
}

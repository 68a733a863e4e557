/*
 * dump.h - raw printing of a ring file (closewatch dump), and the address
 * formatting every output shares.
 */
#ifndef CW_DUMP_H
#define CW_DUMP_H

#include <stdio.h>

#include "../common/shm_reader.h"

void cw_dump(FILE *out, const struct cw_ring *r);
void cw_format_addr(const struct cw_addr *a, char *buf, size_t len);
/* inet, inet6, unix, netlink or other, for an address family number. */
const char *cw_family_name(unsigned family);

#endif

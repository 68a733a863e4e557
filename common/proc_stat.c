/*
 * proc_stat.c - parses a /proc/PID/stat line (proc_stat.h).
 */
#include "proc_stat.h"

#include <string.h>

/* The decimal number at *p (a leading '-' read as 0), advancing *p. */
static uint64_t number(const char **p, const char *end)
{
    uint64_t v = 0;
    const char *s = *p;
    if (s < end && *s == '-')
        s++;
    for (; s < end && *s >= '0' && *s <= '9'; s++)
        v = v * 10 + (uint64_t)(*s - '0');
    *p = s;
    return v;
}

int cw_pstat_parse(const char *buf, size_t n, struct cw_pstat *out)
{
    memset(out, 0, sizeof *out);
    out->image_masked = 1;
    /* comm (field 2) may hold spaces and parentheses: fields 3 on come after
     * the last ')'. */
    const char *end = buf + n, *p = NULL;
    for (const char *s = buf; s < end; s++)
        if (*s == ')')
            p = s;
    if (!p || end - p < 4 || p[1] != ' ')
        return -1;
    p += 2;
    out->state = *p;
    int field = 3, have_start = 0;
    for (p++; p < end && *p != '\n';) {
        if (*p++ != ' ')
            continue;
        field++;
        if (field == 4) {
            out->ppid = (int)number(&p, end);
        } else if (field == 22) {
            out->starttime = number(&p, end);
            have_start = 1;
        } else if ((field >= 26 && field <= 28) || (field >= 48 && field <= 51)) {
            uint64_t v = number(&p, end);
            out->image = (out->image ^ v) * 0x100000001b3ull;
            if (v > 1)
                out->image_masked = 0;
            if (field == 51) {
                out->image_known = 1;
                break;
            }
        }
    }
    return have_start ? 0 : -1;
}

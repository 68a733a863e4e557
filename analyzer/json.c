/*
 * json.c - JSON string escaping and timestamps (see json.h).
 */
#include "json.h"

#include <time.h>

int cw_utf8_len(const unsigned char *p)
{
    int n = p[0] >= 0xf0 && p[0] <= 0xf4  ? 4
            : p[0] >= 0xe0                ? 3
            : p[0] >= 0xc2 && p[0] < 0xe0 ? 2
                                          : 0;
    for (int i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    return n;
}

void cw_json_str(FILE *out, const char *s)
{
    if (!s) {
        fputs("null", out);
        return;
    }
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default:
            if (*p < 0x20) {
                fprintf(out, "\\u%04x", *p);
            } else if (*p < 0x80) {
                fputc(*p, out);
            } else {
                /* Paths and argv are bytes, JSON is UTF-8: replace what is not. */
                int n = cw_utf8_len(p);
                if (n) {
                    fwrite(p, 1, (size_t)n, out);
                    p += n - 1;
                } else {
                    fputs("\\ufffd", out);
                }
            }
        }
    }
    fputc('"', out);
}

void cw_iso8601(char *buf, size_t len, unsigned long long realtime_ns)
{
    time_t t = (time_t)(realtime_ns / 1000000000ull);
    struct tm tm;
    gmtime_r(&t, &tm);
    size_t n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm);
    if (n && n < len)
        snprintf(buf + n, len - n, ".%03lluZ", (realtime_ns / 1000000ull) % 1000ull);
}

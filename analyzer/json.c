/*
 * json.c - JSON string escaping and timestamps (see json.h).
 */
#include "json.h"

#include <time.h>

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
            if (*p < 0x20)
                fprintf(out, "\\u%04x", *p);
            else
                fputc(*p, out);
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

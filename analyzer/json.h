/*
 * json.h - minimal JSON writing for the JSON and SARIF reports, and the
 * UTF-8 check every text format shares.
 */
#ifndef CW_JSON_H
#define CW_JSON_H

#include <stdio.h>

/* Length of the valid UTF-8 sequence at p, or 0 if it is not one. */
int cw_utf8_len(const unsigned char *p);
/* Writes s as a JSON string literal (null for NULL). */
void cw_json_str(FILE *out, const char *s);
/* ISO 8601 UTC timestamp of a CLOCK_REALTIME ns value. */
void cw_iso8601(char *buf, size_t len, unsigned long long realtime_ns);

#endif

/*
 * json.h - minimal JSON writing for the JSON and SARIF reports.
 */
#ifndef CW_JSON_H
#define CW_JSON_H

#include <stdio.h>

/* Writes s as a JSON string literal (null for NULL). */
void cw_json_str(FILE *out, const char *s);
/* ISO 8601 UTC timestamp of a CLOCK_REALTIME ns value. */
void cw_iso8601(char *buf, size_t len, unsigned long long realtime_ns);

#endif

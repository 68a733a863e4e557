/*
 * jsonq.c - reads closewatch's JSON and SARIF reports for the tests (see
 * jsonq.h): jansson parses, strictly, and the document is copied into the
 * plain tree of struct jv the tests walk.
 *
 * jansson already rejects what RFC 8259 does not allow, invalid UTF-8 and
 * lone surrogate escapes; JSON_REJECT_DUPLICATES adds duplicate keys. Two
 * rules are ours: a depth bound (a hostile document cannot exhaust the
 * stack of the copy), checked before jansson sees the text, and "trailing
 * garbage" named as such.
 */
#include "jsonq.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deep enough for any report, shallow enough for any stack. */
#define JQ_MAX_DEPTH 256

__attribute__((format(printf, 4, 5))) static void jq_fail(char *err, size_t errlen, size_t offset,
                                                          const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    int n = snprintf(err, errlen, "offset %zu: ", offset);
    if (n < 0 || (size_t)n >= errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

/* Where the text first nests deeper than JQ_MAX_DEPTH, or (size_t)-1. */
static size_t too_deep_at(const char *s, size_t len)
{
    int depth = 0, in_string = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
        } else if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > JQ_MAX_DEPTH)
                return i;
        } else if (c == ']' || c == '}') {
            depth--;
        }
    }
    return (size_t)-1;
}

static char *copy_bytes(const char *s, size_t n)
{
    char *c = malloc(n + 1);
    if (c) {
        memcpy(c, s, n);
        c[n] = 0;
    }
    return c;
}

static struct jv *from_jansson(const json_t *j)
{
    struct jv *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    int ok = 1;
    switch (json_typeof(j)) {
    case JSON_NULL: v->type = JV_NULL; break;
    case JSON_TRUE:
    case JSON_FALSE:
        v->type = JV_BOOL;
        v->b = json_is_true(j);
        break;
    case JSON_INTEGER: /* not with JSON_DECODE_INT_AS_REAL, but cheap to keep */
    case JSON_REAL:
        v->type = JV_NUM;
        v->num = json_number_value(j);
        break;
    case JSON_STRING:
        v->type = JV_STR;
        v->len = json_string_length(j);
        ok = (v->str = copy_bytes(json_string_value(j), v->len)) != NULL;
        break;
    case JSON_ARRAY: {
        v->type = JV_ARR;
        size_t n = json_array_size(j);
        ok = (v->item = calloc(n ? n : 1, sizeof *v->item)) != NULL;
        for (size_t i = 0; ok && i < n; i++, v->len++)
            ok = (v->item[i] = from_jansson(json_array_get(j, i))) != NULL;
        break;
    }
    case JSON_OBJECT: {
        v->type = JV_OBJ;
        size_t n = json_object_size(j);
        ok = (v->item = calloc(n ? n : 1, sizeof *v->item)) &&
             (v->key = calloc(n ? n : 1, sizeof *v->key));
        const char *k;
        json_t *val;
        /* jansson keeps insertion order: the keys come as written */
        json_object_foreach((json_t *)j, k, val)
        {
            if (!ok)
                break;
            ok = (v->key[v->len] = copy_bytes(k, strlen(k))) != NULL &&
                 (v->item[v->len] = from_jansson(val)) != NULL;
            v->len += v->key[v->len] != NULL;
        }
        break;
    }
    }
    if (!ok) {
        jq_free(v);
        return NULL;
    }
    return v;
}

void jq_free(struct jv *v)
{
    if (!v)
        return;
    for (size_t i = 0; (v->type == JV_ARR || v->type == JV_OBJ) && i < v->len; i++) {
        jq_free(v->item[i]);
        if (v->key)
            free(v->key[i]);
    }
    free(v->item);
    free(v->key);
    free(v->str);
    free(v);
}

struct jv *jq_parse_n(const char *text, size_t len, char *err, size_t errlen)
{
    if (err && errlen)
        err[0] = 0;
    if (!text) {
        jq_fail(err, errlen, 0, "no text");
        return NULL;
    }
    size_t deep = too_deep_at(text, len);
    if (deep != (size_t)-1) {
        jq_fail(err, errlen, deep, "nested deeper than %d", JQ_MAX_DEPTH);
        return NULL;
    }
    /* EOF check ours: jansson stops after the document and says where. */
    json_error_t e;
    json_t *j = json_loadb(text, len,
                           JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL |
                               JSON_DECODE_INT_AS_REAL | JSON_DISABLE_EOF_CHECK,
                           &e);
    if (!j) {
        jq_fail(err, errlen, (size_t)e.position, "%s", e.text);
        return NULL;
    }
    size_t end = (size_t)e.position;
    while (end < len &&
           (text[end] == ' ' || text[end] == '\t' || text[end] == '\n' || text[end] == '\r'))
        end++;
    if (end != len) {
        json_decref(j);
        jq_fail(err, errlen, end, "trailing garbage after the document");
        return NULL;
    }
    struct jv *v = from_jansson(j);
    json_decref(j);
    if (!v)
        jq_fail(err, errlen, 0, "out of memory");
    return v;
}

struct jv *jq_parse(const char *text, char *err, size_t errlen)
{
    return jq_parse_n(text, text ? strlen(text) : 0, err, errlen);
}

/* ---- queries ---------------------------------------------------------------- */

const struct jv *jq_get(const struct jv *root, const char *path)
{
    const struct jv *v = root;
    const char *s = path ? path : "";
    while (v && *s) {
        const char *dot = strchr(s, '.');
        size_t n = dot ? (size_t)(dot - s) : strlen(s);
        const struct jv *next = NULL;
        if (v->type == JV_OBJ) {
            for (size_t i = 0; i < v->len && !next; i++)
                if (strlen(v->key[i]) == n && !memcmp(v->key[i], s, n))
                    next = v->item[i];
        } else if (v->type == JV_ARR && n > 0 && n < 10) {
            size_t idx = 0, k = 0;
            while (k < n && s[k] >= '0' && s[k] <= '9')
                idx = idx * 10 + (size_t)(s[k++] - '0');
            if (k == n && idx < v->len)
                next = v->item[idx];
        }
        v = next;
        s += n;
        if (*s == '.')
            s++;
    }
    return v;
}

enum jv_type jq_type(const struct jv *v)
{
    return v ? v->type : JV_NULL;
}

int jq_len(const struct jv *root, const char *path)
{
    const struct jv *v = jq_get(root, path);
    return v && (v->type == JV_ARR || v->type == JV_OBJ) ? (int)v->len : -1;
}

const char *jq_str(const struct jv *root, const char *path)
{
    const struct jv *v = jq_get(root, path);
    return v && v->type == JV_STR ? v->str : NULL;
}

double jq_num(const struct jv *root, const char *path)
{
    const struct jv *v = jq_get(root, path);
    return v && v->type == JV_NUM ? v->num : NAN;
}

int jq_bool(const struct jv *root, const char *path)
{
    const struct jv *v = jq_get(root, path);
    return v && v->type == JV_BOOL ? v->b : -1;
}

int jq_is_null(const struct jv *root, const char *path)
{
    const struct jv *v = jq_get(root, path);
    return v && v->type == JV_NULL;
}

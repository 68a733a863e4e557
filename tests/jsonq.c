/*
 * jsonq.c - the strict JSON parser and path queries the end-to-end tests use
 * to read closewatch's JSON and SARIF reports (see jsonq.h).
 */
#include "jsonq.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deep enough for any report, shallow enough that a hostile document cannot
 * exhaust the stack of the recursive descent. */
#define JQ_MAX_DEPTH 256

struct jq_parser {
    const unsigned char *s;
    size_t len, pos;
    int depth;
    char *err;
    size_t errlen;
    int failed;
};

/* Records the first error only: later ones are consequences of it. */
__attribute__((format(printf, 2, 3))) static void jq_fail(struct jq_parser *p, const char *fmt, ...)
{
    if (p->failed)
        return;
    p->failed = 1;
    if (!p->err || !p->errlen)
        return;
    int n = snprintf(p->err, p->errlen, "offset %zu: ", p->pos);
    if (n < 0 || (size_t)n >= p->errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

static int jq_peek(const struct jq_parser *p)
{
    return p->pos < p->len ? p->s[p->pos] : -1;
}

/* RFC 8259 whitespace is exactly these four bytes: no \f, \v or NBSP. */
static void jq_ws(struct jq_parser *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
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

static struct jv *jq_new(struct jq_parser *p, enum jv_type t)
{
    struct jv *v = calloc(1, sizeof *v);
    if (!v)
        jq_fail(p, "out of memory");
    else
        v->type = t;
    return v;
}

/* A growable byte buffer for decoded strings. */
struct jq_buf {
    char *b;
    size_t n, cap;
};

static int jq_put(struct jq_buf *b, const void *bytes, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 32;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *nb = realloc(b->b, cap);
        if (!nb)
            return -1;
        b->b = nb;
        b->cap = cap;
    }
    memcpy(b->b + b->n, bytes, n);
    b->n += n;
    b->b[b->n] = 0;
    return 0;
}

static int jq_put_cp(struct jq_buf *b, uint32_t cp)
{
    unsigned char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (unsigned char)(0xc0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (unsigned char)(0xe0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[2] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 3;
    } else {
        u[0] = (unsigned char)(0xf0 | (cp >> 18));
        u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        u[3] = (unsigned char)(0x80 | (cp & 0x3f));
        n = 4;
    }
    return jq_put(b, u, n);
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing above U+10FFFF), or 0 if it is not one. */
static size_t jq_utf8(const unsigned char *s, size_t avail)
{
    unsigned c = s[0];
    size_t n;
    uint32_t cp, min;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0) {
        n = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        n = 3, cp = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        n = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n > avail)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static int jq_hex4(struct jq_parser *p, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int c = jq_peek(p);
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) {
            jq_fail(p, "\\u needs four hex digits");
            return -1;
        }
        v = v << 4 | (uint32_t)d;
        p->pos++;
    }
    *out = v;
    return 0;
}

/* After the backslash: one escape, decoded into b. */
static int jq_escape(struct jq_parser *p, struct jq_buf *b)
{
    int c = jq_peek(p);
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *hit = c > 0 ? strchr(from, c) : NULL;
    if (hit) {
        p->pos++;
        return jq_put(b, &to[hit - from], 1);
    }
    if (c != 'u') {
        jq_fail(p, "invalid escape \\%c", c > 0x20 && c < 0x7f ? c : '?');
        return -1;
    }
    p->pos++;
    uint32_t cp;
    if (jq_hex4(p, &cp))
        return -1;
    if (cp >= 0xdc00 && cp <= 0xdfff) {
        jq_fail(p, "lone low surrogate \\u%04x", (unsigned)cp);
        return -1;
    }
    if (cp >= 0xd800 && cp <= 0xdbff) {
        /* A high surrogate must be followed by an escaped low one. */
        uint32_t lo;
        if (p->pos + 1 >= p->len || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
            jq_fail(p, "high surrogate \\u%04x without a low one", (unsigned)cp);
            return -1;
        }
        p->pos += 2;
        if (jq_hex4(p, &lo))
            return -1;
        if (lo < 0xdc00 || lo > 0xdfff) {
            jq_fail(p, "high surrogate \\u%04x followed by \\u%04x", (unsigned)cp, (unsigned)lo);
            return -1;
        }
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    return jq_put_cp(b, cp);
}

/* At the opening quote: the decoded string (malloc'd) and its length. */
static char *jq_string(struct jq_parser *p, size_t *len)
{
    struct jq_buf b = {0};
    p->pos++; /* the quote */
    if (jq_put(&b, "", 0))
        goto oom;
    for (;;) {
        int c = jq_peek(p);
        if (c < 0) {
            jq_fail(p, "unterminated string");
            goto bad;
        }
        if (c == '"') {
            p->pos++;
            *len = b.n;
            return b.b;
        }
        if (c < 0x20) {
            jq_fail(p, "unescaped control character 0x%02x in a string", c);
            goto bad;
        }
        if (c == '\\') {
            p->pos++;
            if (jq_escape(p, &b))
                goto bad;
            continue;
        }
        size_t n = jq_utf8(p->s + p->pos, p->len - p->pos);
        if (!n) {
            jq_fail(p, "invalid UTF-8 byte 0x%02x", c);
            goto bad;
        }
        if (jq_put(&b, p->s + p->pos, n))
            goto oom;
        p->pos += n;
    }
oom:
    jq_fail(p, "out of memory");
bad:
    free(b.b);
    return NULL;
}

static size_t jq_digits(struct jq_parser *p)
{
    size_t start = p->pos;
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9')
        p->pos++;
    return p->pos - start;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? : no '+', no leading zeros,
 * no bare '.', no hex, no NaN or Infinity. */
static struct jv *jq_number(struct jq_parser *p)
{
    size_t start = p->pos;
    if (jq_peek(p) == '-')
        p->pos++;
    if (jq_peek(p) == '0') {
        p->pos++;
        if (jq_peek(p) >= '0' && jq_peek(p) <= '9') {
            jq_fail(p, "leading zero in a number");
            return NULL;
        }
    } else if (!jq_digits(p)) {
        jq_fail(p, "expected a digit");
        return NULL;
    }
    if (jq_peek(p) == '.') {
        p->pos++;
        if (!jq_digits(p)) {
            jq_fail(p, "expected a digit after '.'");
            return NULL;
        }
    }
    if (jq_peek(p) == 'e' || jq_peek(p) == 'E') {
        p->pos++;
        if (jq_peek(p) == '+' || jq_peek(p) == '-')
            p->pos++;
        if (!jq_digits(p)) {
            jq_fail(p, "expected a digit in the exponent");
            return NULL;
        }
    }
    /* The grammar is checked; strtod only converts (on a NUL-ended copy,
     * since the text need not end right after the number). */
    char tmp[128];
    size_t n = p->pos - start;
    if (n >= sizeof tmp) {
        jq_fail(p, "number too long for a test parser");
        return NULL;
    }
    memcpy(tmp, p->s + start, n);
    tmp[n] = 0;
    struct jv *v = jq_new(p, JV_NUM);
    if (v)
        v->num = strtod(tmp, NULL);
    return v;
}

static struct jv *jq_value(struct jq_parser *p);

static int jq_append(struct jq_parser *p, struct jv *c, char *key, struct jv *item)
{
    struct jv **ni = realloc(c->item, (c->len + 1) * sizeof *ni);
    if (ni)
        c->item = ni;
    if (ni && c->type == JV_OBJ) {
        char **nk = realloc(c->key, (c->len + 1) * sizeof *nk);
        if (!nk)
            ni = NULL;
        else
            c->key = nk;
    }
    if (!ni) {
        jq_fail(p, "out of memory");
        return -1;
    }
    c->item[c->len] = item;
    if (c->type == JV_OBJ)
        c->key[c->len] = key;
    c->len++;
    return 0;
}

/* At '[' or '{'. */
static struct jv *jq_container(struct jq_parser *p)
{
    int obj = jq_peek(p) == '{';
    int close = obj ? '}' : ']';
    if (++p->depth > JQ_MAX_DEPTH) {
        jq_fail(p, "nested deeper than %d", JQ_MAX_DEPTH);
        return NULL;
    }
    p->pos++;
    struct jv *c = jq_new(p, obj ? JV_OBJ : JV_ARR);
    if (!c)
        return NULL;
    jq_ws(p);
    if (jq_peek(p) == close) {
        p->pos++;
        p->depth--;
        return c;
    }
    for (;;) {
        char *key = NULL;
        if (obj) {
            jq_ws(p);
            if (jq_peek(p) != '"') {
                jq_fail(p, "expected a string key");
                goto bad;
            }
            size_t klen;
            key = jq_string(p, &klen);
            if (!key)
                goto bad;
            if (strlen(key) != klen) {
                jq_fail(p, "key holds a NUL character");
                free(key);
                goto bad;
            }
            for (size_t i = 0; i < c->len; i++)
                if (!strcmp(c->key[i], key)) {
                    jq_fail(p, "duplicate key \"%s\"", key);
                    free(key);
                    goto bad;
                }
            jq_ws(p);
            if (jq_peek(p) != ':') {
                jq_fail(p, "expected ':' after a key");
                free(key);
                goto bad;
            }
            p->pos++;
        }
        struct jv *item = jq_value(p);
        if (!item || jq_append(p, c, key, item)) {
            free(key);
            jq_free(item);
            goto bad;
        }
        jq_ws(p);
        int ch = jq_peek(p);
        if (ch == ',') {
            p->pos++;
            continue; /* a trailing comma fails at the next value or key */
        }
        if (ch == close) {
            p->pos++;
            p->depth--;
            return c;
        }
        jq_fail(p, "expected ',' or '%c'", close);
        goto bad;
    }
bad:
    jq_free(c);
    return NULL;
}

static struct jv *jq_literal(struct jq_parser *p, const char *word, enum jv_type t, int b)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n)) {
        jq_fail(p, "unexpected character '%c'", jq_peek(p) > 0x20 ? jq_peek(p) : '?');
        return NULL;
    }
    p->pos += n;
    struct jv *v = jq_new(p, t);
    if (v)
        v->b = b;
    return v;
}

static struct jv *jq_value(struct jq_parser *p)
{
    jq_ws(p);
    int c = jq_peek(p);
    switch (c) {
    case -1: jq_fail(p, "unexpected end of text"); return NULL;
    case '{':
    case '[': return jq_container(p);
    case '"': {
        struct jv *v = jq_new(p, JV_STR);
        if (v && !(v->str = jq_string(p, &v->len))) {
            free(v);
            v = NULL;
        }
        return v;
    }
    case 't': return jq_literal(p, "true", JV_BOOL, 1);
    case 'f': return jq_literal(p, "false", JV_BOOL, 0);
    case 'n': return jq_literal(p, "null", JV_NULL, 0);
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return jq_number(p);
        jq_fail(p, "unexpected character '%c'", c > 0x20 && c < 0x7f ? c : '?');
        return NULL;
    }
}

struct jv *jq_parse_n(const char *text, size_t len, char *err, size_t errlen)
{
    struct jq_parser p = {
        .s = (const unsigned char *)text, .len = len, .err = err, .errlen = errlen};
    if (err && errlen)
        err[0] = 0;
    if (!text) {
        jq_fail(&p, "no text");
        return NULL;
    }
    struct jv *v = jq_value(&p);
    if (!v)
        return NULL;
    jq_ws(&p);
    if (p.pos != p.len) {
        jq_fail(&p, "trailing garbage after the document");
        jq_free(v);
        return NULL;
    }
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

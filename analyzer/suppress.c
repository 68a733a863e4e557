/*
 * suppress.c - suppression files (see suppress.h): parsing `KIND:PATTERN`
 * rules with errors that name FILE:LINE, and marking the findings whose
 * stack or program a rule matches.
 */
#include "suppress.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- parsing --------------------------------------------------------------- */

/* Cuts a comment: `#` at the start of a rule or after whitespace, so that
 * `close_wait:pool_* # bug 123` works while a pattern may still hold a `#`. */
static void cut_comment(char *s)
{
    for (char *p = s; *p; p++)
        if (*p == '#' && (p == s || isspace((unsigned char)p[-1]))) {
            *p = '\0';
            return;
        }
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* enum cw_kind for name, -1 for `socket` (any kind), -2 if unknown. */
static int parse_kind(const char *name)
{
    if (!strcmp(name, "socket"))
        return -1;
    int k = cw_kind_by_name(name);
    return k >= 0 ? k : -2;
}

static void unknown_kind_error(char *err, size_t errlen, const char *path, int line,
                               const char *kind)
{
    int n = snprintf(err, errlen, "%s:%d: unknown kind '%s' (expected ", path, line, kind);
    for (int k = 0; k < CW_K_COUNT && n >= 0 && (size_t)n < errlen; k++)
        n += snprintf(err + n, errlen - (size_t)n, "%s, ", cw_kind_name((enum cw_kind)k));
    if (n >= 2 && (size_t)n < errlen)
        snprintf(err + n - 2, errlen - (size_t)n + 2, " or socket)");
}

static int add_rule(struct cw_suppressions *s, int kind, const char *pattern, int line)
{
    struct cw_suppression *v = realloc(s->v, (size_t)(s->n + 1) * sizeof *v);
    if (!v)
        return -1;
    s->v = v;
    char *copy = strdup(pattern);
    if (!copy)
        return -1;
    v[s->n++] = (struct cw_suppression){.kind = kind, .pattern = copy, .line = line, .hits = 0};
    return 0;
}

/* One line: 0 when it was a rule or nothing, -1 with err set otherwise. */
static int parse_line(struct cw_suppressions *s, char *text, int line, char *err, size_t errlen)
{
    cut_comment(text);
    char *rule = trim(text);
    if (!*rule)
        return 0;
    char *colon = strchr(rule, ':');
    if (!colon) {
        snprintf(err, errlen, "%s:%d: expected KIND:PATTERN", s->path, line);
        return -1;
    }
    *colon = '\0';
    char *kind_name = trim(rule), *pattern = trim(colon + 1);
    if (!*kind_name || !*pattern) {
        snprintf(err, errlen, "%s:%d: expected KIND:PATTERN", s->path, line);
        return -1;
    }
    int kind = parse_kind(kind_name);
    if (kind == -2) {
        unknown_kind_error(err, errlen, s->path, line, kind_name);
        return -1;
    }
    if (add_rule(s, kind, pattern, line)) {
        snprintf(err, errlen, "%s:%d: out of memory", s->path, line);
        return -1;
    }
    return 0;
}

int cw_suppressions_load(struct cw_suppressions *s, const char *path, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    snprintf(s->path, sizeof s->path, "%s", path);
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char *text = NULL;
    size_t cap = 0;
    int line = 0, rc = 0;
    while (rc == 0 && getline(&text, &cap, f) >= 0)
        rc = parse_line(s, text, ++line, err, errlen);
    free(text);
    fclose(f);
    if (rc)
        cw_suppressions_free(s);
    return rc;
}

void cw_suppressions_free(struct cw_suppressions *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->v[i].pattern);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

/* ---- matching -------------------------------------------------------------- */

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* A path matches by its full text or by its last component, so that both
 * a pattern for the whole path (star, slash, libpq.so star) and a bare
 * `libpq.so*` work. */
static int match_path(const char *pattern, const char *path)
{
    if (!path || !*path)
        return 0;
    return fnmatch(pattern, path, 0) == 0 || fnmatch(pattern, base_name(path), 0) == 0;
}

static int match_frame(const char *pattern, const struct cw_vframe *f)
{
    return (f->function && fnmatch(pattern, f->function, 0) == 0) ||
           match_path(pattern, f->module) || match_path(pattern, f->file);
}

static int rule_matches(const struct cw_suppression *rule, enum cw_kind k,
                        const struct cw_vstack *const *stacks, int n, const char *exe)
{
    if (rule->kind >= 0 && rule->kind != (int)k)
        return 0;
    for (int s = 0; s < n; s++)
        for (int i = 0; i < stacks[s]->n; i++)
            if (match_frame(rule->pattern, &stacks[s]->frames[i]))
                return 1;
    /* The program itself, for findings without frames and for rules that
     * silence a whole program (a pattern such as star, slash, `java`). */
    return match_path(rule->pattern, exe);
}

int cw_suppressions_match(struct cw_suppressions *s, enum cw_kind k,
                          const struct cw_vstack *const *stacks, int n, const char *exe)
{
    for (int r = 0; s && r < s->n; r++)
        if (rule_matches(&s->v[r], k, stacks, n, exe)) {
            s->v[r].hits++;
            return r + 1;
        }
    return 0;
}

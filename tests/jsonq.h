/*
 * jsonq.h - strict JSON parsing (RFC 8259, by jansson) into a plain tree with
 * a path query helper, for tests that check closewatch's JSON and SARIF
 * output. Strict on purpose: a report that only a forgiving parser accepts
 * is a bug the tests must see.
 *
 * Beyond the RFC's grammar it also rejects what a report must never contain:
 * invalid UTF-8, lone surrogate escapes and duplicate object keys.
 *
 * Queries use dotted paths: "findings.0.stacks.open.0.function" walks object
 * keys and, where the node is an array, decimal indices. An empty or NULL
 * path is the node itself. Keys containing '.' cannot be addressed.
 */
#ifndef CW_TEST_JSONQ_H
#define CW_TEST_JSONQ_H

#include <stddef.h>

enum jv_type { JV_NULL, JV_BOOL, JV_NUM, JV_STR, JV_ARR, JV_OBJ };

struct jv {
    enum jv_type type;
    int b;            /* JV_BOOL */
    double num;       /* JV_NUM */
    char *str;        /* JV_STR: UTF-8, NUL-terminated (may hold NULs, see len) */
    size_t len;       /* JV_STR: bytes; JV_ARR/JV_OBJ: number of items */
    struct jv **item; /* JV_ARR elements, JV_OBJ values */
    char **key;       /* JV_OBJ keys, parallel to item */
};

/* Parses a whole NUL-terminated document; NULL with "offset N: what" in err. */
struct jv *jq_parse(const char *text, char *err, size_t errlen);
/* The same for text that may contain NUL bytes (which are then rejected). */
struct jv *jq_parse_n(const char *text, size_t len, char *err, size_t errlen);
void jq_free(struct jv *v);

/* The node at path under root, or NULL if any step is missing. */
const struct jv *jq_get(const struct jv *root, const char *path);

/* Typed accessors of the node at path; on a missing node or another type:
 * jq_len -1, jq_str NULL, jq_num NaN, jq_bool -1, jq_is_null 0. */
int jq_len(const struct jv *root, const char *path);
const char *jq_str(const struct jv *root, const char *path);
double jq_num(const struct jv *root, const char *path);
int jq_bool(const struct jv *root, const char *path);
int jq_is_null(const struct jv *root, const char *path);
enum jv_type jq_type(const struct jv *v);

#endif

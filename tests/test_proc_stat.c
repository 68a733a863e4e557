/*
 * test_proc_stat.c - the one /proc/PID/stat parser (common/proc_stat.c).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../common/proc_stat.h"

/* A line with every field numbered by its position, after comm. */
static size_t line(char *buf, size_t cap, const char *comm, int nfields)
{
    size_t n = (size_t)snprintf(buf, cap, "123 (%s) S", comm);
    for (int f = 4; f <= nfields; f++)
        n += (size_t)snprintf(buf + n, cap - n, " %d", f * 10);
    n += (size_t)snprintf(buf + n, cap - n, "\n");
    return n;
}

Test(proc_stat, comm_with_spaces_and_parens_does_not_shift_fields)
{
    char buf[2048];
    struct cw_pstat st;
    size_t n = line(buf, sizeof buf, "a) (b ) c", 52);
    cr_assert_eq(cw_pstat_parse(buf, n, &st), 0);
    cr_expect_eq(st.state, 'S');
    cr_expect_eq(st.ppid, 40);
    cr_expect_eq(st.starttime, 220);
    cr_expect(st.image_known);
    cr_expect_not(st.image_masked);
}

Test(proc_stat, a_short_line_has_no_image_and_a_truncated_one_is_refused)
{
    char buf[2048];
    struct cw_pstat st;
    size_t n = line(buf, sizeof buf, "x", 30);
    cr_assert_eq(cw_pstat_parse(buf, n, &st), 0);
    cr_expect_eq(st.starttime, 220);
    cr_expect_not(st.image_known);
    n = line(buf, sizeof buf, "x", 21);
    cr_expect_eq(cw_pstat_parse(buf, n, &st), -1, "no field 22");
    cr_expect_eq(cw_pstat_parse("123 (x", 6, &st), -1, "no end of comm");
}

Test(proc_stat, our_own_line_gives_our_parent)
{
    char buf[2048];
    FILE *f = fopen("/proc/self/stat", "re");
    cr_assert(f);
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    struct cw_pstat st;
    cr_assert_eq(cw_pstat_parse(buf, n, &st), 0);
    cr_expect_eq(st.ppid, getppid());
    cr_expect_eq(st.state, 'R');
    cr_expect_gt(st.starttime, 0);
    cr_expect(st.image_known);
}

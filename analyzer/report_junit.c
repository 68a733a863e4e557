/*
 * report_junit.c - the report as JUnit XML, for CI systems that show test
 * results (Jenkins, GitLab): one test case per group of findings, failed
 * when its kind is an error, named by what it is and where it was opened,
 * with the stacks and sockets as the failure's text. A clean run is one
 * passing test case, so the CI shows that the check ran.
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "report.h"

#define SOCKETS_SHOWN 10

/* XML text or attribute value: markup escaped, control characters that
 * XML 1.0 forbids and bytes that are not UTF-8 replaced. */
static void xml(FILE *out, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        switch (*p) {
        case '&': fputs("&amp;", out); continue;
        case '<': fputs("&lt;", out); continue;
        case '>': fputs("&gt;", out); continue;
        case '"': fputs("&quot;", out); continue;
        case '\'': fputs("&apos;", out); continue;
        default: break;
        }
        if (*p < 0x20 && *p != '\n' && *p != '\t' && *p != '\r') {
            fputs("\xef\xbf\xbd", out);
            continue;
        }
        if (*p < 0x80) {
            fputc(*p, out);
            continue;
        }
        int n = cw_utf8_len(p);
        if (n) {
            fwrite(p, 1, (size_t)n, out);
            p += n - 1;
        } else {
            fputs("\xef\xbf\xbd", out);
        }
    }
}

static void stack_text(FILE *out, const struct cw_vstack *s, const char *label)
{
    if (!s->n)
        return;
    fprintf(out, "%s\n", label);
    for (int i = 0; i < s->n; i++) {
        const struct cw_vframe *f = &s->frames[i];
        char line[64];
        snprintf(line, sizeof line, "  #%-2d %-18s in ", i, f->address_text);
        fputs(line, out);
        xml(out, f->function ? f->function : "??");
        if (f->file) {
            fputc(' ', out);
            xml(out, f->file);
            if (f->line) /* a Java native method has a file, no line */
                fprintf(out, ":%d", f->line);
        } else if (f->module) {
            fputs(" (", out);
            xml(out, f->module);
            fputc(')', out);
        }
        fputc('\n', out);
    }
}

/* "3 sockets in CLOSE_WAIT without close() at server.c:49" */
static void case_name(FILE *out, const struct cw_vgroup *g)
{
    xml(out, g->title);
    const struct cw_vframe *at = g->first->placed->at;
    if (at && at->file) {
        const char *slash = strrchr(at->file, '/');
        fputs(" at ", out);
        xml(out, slash ? slash + 1 : at->file);
        fprintf(out, ":%d", at->line);
    } else if (at && at->function) {
        fputs(" in ", out);
        xml(out, at->function);
    }
}

static void failure_text(FILE *out, const struct cw_vgroup *g)
{
    const struct cw_vfinding *f = g->first;
    fprintf(out, "process: pid %d ", f->proc->pid);
    xml(out, f->proc->cmdline[0] ? f->proc->cmdline : f->proc->exe);
    fputc('\n', out);
    if (f->eof_sentence)
        fprintf(out, "%s\n", f->eof_sentence);
    if (g->kind->placed_by == CW_PLACE_CLOSE) {
        stack_text(out, &f->close, "second close() at:");
    } else {
        stack_text(out, &f->open, "opened at:");
        stack_text(out, &f->eof_stack, "EOF seen at:");
        if (f->closed)
            stack_text(out, &f->close,
                       f->closed_at_exit ? "closed only at exit, at:" : "closed at:");
    }
    fputs("sockets:\n", out);
    for (int i = 0; i < g->n && i < SOCKETS_SHOWN; i++) {
        const struct cw_vfinding *s = &g->first[i];
        char line[300];
        snprintf(line, sizeof line, "  pid %d fd %d %s <-> %s, %.1f s in CLOSE_WAIT\n",
                 s->proc->pid, s->fd, s->local[0] ? s->local : "-", s->peer[0] ? s->peer : "-",
                 s->seconds_in_close_wait);
        xml(out, line);
    }
    if (g->n > SOCKETS_SHOWN)
        fprintf(out, "  ... and %d more\n", g->n - SOCKETS_SHOWN);
    xml(out, g->kind->advice);
    fputc('\n', out);
}

void cw_report_junit(FILE *out, const struct cw_view *v)
{
    int failures = 0;
    for (int i = 0; i < v->ngroups; i++)
        failures += v->groups[i].kind->is_error;
    int tests = v->ngroups ? v->ngroups : 1;
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", out);
    fprintf(out, "<testsuites name=\"closewatch\" tests=\"%d\" failures=\"%d\">\n", tests,
            failures);
    fprintf(out,
            "  <testsuite name=\"closewatch\" tests=\"%d\" failures=\"%d\" errors=\"0\" "
            "skipped=\"0\" timestamp=\"%s\">\n",
            tests, failures, v->generated_at);
    if (!v->ngroups) {
        fputs("    <testcase classname=\"closewatch\" name=\"no socket left in CLOSE_WAIT\">\n",
              out);
        fputs("      <system-out>", out);
        xml(out, v->summary);
        fputs("</system-out>\n    </testcase>\n", out);
    }
    for (int i = 0; i < v->ngroups; i++) {
        const struct cw_vgroup *g = &v->groups[i];
        const struct cw_vframe *at = g->first->placed->at;
        fprintf(out, "    <testcase classname=\"closewatch.%s\" name=\"", g->kind->name);
        case_name(out, g);
        fputc('"', out);
        if (at && at->file) {
            fputs(" file=\"", out);
            xml(out, at->file);
            fprintf(out, "\" line=\"%d\"", at->line);
        }
        fputs(">\n", out);
        if (g->kind->is_error) {
            fprintf(out, "      <failure type=\"%s\" message=\"", g->kind->name);
            xml(out, g->title);
            fputs("\">", out);
            failure_text(out, g);
            fputs("</failure>\n", out);
        } else {
            fputs("      <system-out>", out);
            failure_text(out, g);
            fputs("</system-out>\n", out);
        }
        fputs("    </testcase>\n", out);
    }
    fputs("    <system-out>", out);
    xml(out, v->summary);
    fputs("</system-out>\n  </testsuite>\n</testsuites>\n", out);
}

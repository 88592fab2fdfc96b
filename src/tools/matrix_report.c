/* matrix_report.c - the matrix's results as JUnit XML (for CI dashboards) and JSON. */
#include <stdio.h>
#include <string.h>

#include "common/json.h"
#include "tools/matrix.h"

static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */

static void xml_text(FILE *f, const char *text) {
  for (const unsigned char *s = (const unsigned char *)text; s && *s;) {
    size_t n = fg__utf8_len(s);
    unsigned char c = *s;
    if (c == '<') fputs("&lt;", f);
    else if (c == '>') fputs("&gt;", f);
    else if (c == '&') fputs("&amp;", f);
    else if (c == '"') fputs("&quot;", f);
    else if (c < 0x20 && c != '\n' && c != '\t') fputs(replacement, f); /* not in XML 1.0 */
    else if (n == 0) fputs(replacement, f);
    else fwrite(s, 1, n, f);
    s += n ? n : 1;
  }
}

static void put_xml(FILE *f, const char *markup, const char *text) {
  fputs(markup, f);
  xml_text(f, text);
}

static void put_json(FILE *f, const char *lead, const char *value) {
  fputs(lead, f);
  fg__json_string(f, value);
}

static size_t count(const matrix *m, const char *result) {
  size_t n = 0;
  for (size_t i = 0; i < m->n; i++) n += m->cases[i].result && !strcmp(m->cases[i].result, result);
  return n;
}

int matrix_write_junit(const matrix *m, const char *path, double total) {
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
  size_t not_run = m->n - count(m, "PASS") - count(m, "FAIL") - count(m, "SKIP");
  fprintf(f, "<testsuites tests=\"%zu\" failures=\"%zu\" skipped=\"%zu\" time=\"%.3f\">\n", m->n,
          count(m, "FAIL"), count(m, "SKIP") + not_run, total);
  fprintf(f, "<testsuite name=\"fgmatrix\" tests=\"%zu\" failures=\"%zu\" errors=\"0\" "
             "skipped=\"%zu\" time=\"%.3f\">\n", m->n, count(m, "FAIL"), count(m, "SKIP") + not_run,
          total);
  for (size_t i = 0; i < m->n; i++) {
    const matrix_case *c = &m->cases[i];
    put_xml(f, "  <testcase classname=\"", c->scenario);
    fprintf(f, ".%s\" name=\"", c->backend);
    xml_text(f, c->name);
    fprintf(f, "\" time=\"%.3f\">", c->seconds);
    if (c->result && !strcmp(c->result, "FAIL")) {
      put_xml(f, "<failure message=\"", c->why);
      put_xml(f, "\">$ ", c->command);
      put_xml(f, "\n", c->log);
      fprintf(f, "</failure>");
    } else if (!c->result || !strcmp(c->result, "SKIP")) {
      put_xml(f, "<skipped message=\"", c->result ? c->why : "not run: interrupted");
      fprintf(f, "\"/>");
    }
    fprintf(f, "</testcase>\n");
  }
  fprintf(f, "</testsuite></testsuites>\n");
  return fclose(f) == 0 ? 0 : -1;
}

int matrix_write_json(const matrix *m, const char *path, double total) {
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  fprintf(f, "{\"total_seconds\": %.3f, \"passed\": %zu, \"failed\": %zu, \"skipped\": %zu, "
             "\"cases\": [\n", total, count(m, "PASS"), count(m, "FAIL"), count(m, "SKIP"));
  for (size_t i = 0; i < m->n; i++) {
    const matrix_case *c = &m->cases[i];
    put_json(f, "  {\"name\": ", c->name);
    put_json(f, ", \"scenario\": ", c->scenario);
    put_json(f, ", \"backend\": ", c->backend);
    put_json(f, ", \"launcher\": ", c->launcher);
    fprintf(f, ", \"processes\": %d, \"expect\": \"%s\", \"result\": ", c->processes,
            c->expect_fail ? "fail" : "pass");
    fg__json_string(f, c->result ? c->result : "NOT RUN");
    fprintf(f, ", \"exit_code\": %d, \"seconds\": %.3f, \"why\": ", c->exit_code, c->seconds);
    fg__json_string(f, c->why ? c->why : "");
    put_json(f, ", \"source\": ", c->source);
    put_json(f, ", \"command\": ", c->command ? c->command : "");
    fprintf(f, "}%s\n", i + 1 < m->n ? "," : "");
  }
  fprintf(f, "]}\n");
  return fclose(f) == 0 ? 0 : -1;
}

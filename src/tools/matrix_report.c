/* matrix_report.c - the matrix's results as JUnit XML (for CI dashboards) and JSON. */
#include <stdio.h>
#include <string.h>

#include "tools/matrix.h"

static void xml_text(FILE *f, const char *s) {
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '<') fputs("&lt;", f);
    else if (c == '>') fputs("&gt;", f);
    else if (c == '&') fputs("&amp;", f);
    else if (c == '"') fputs("&quot;", f);
    else if (c < 0x20 && c != '\n' && c != '\t') fprintf(f, "&#x%x;", 0xfffd); /* not allowed in XML 1.0 */
    else fputc(c, f);
  }
}

static void json_text(FILE *f, const char *s) {
  fputc('"', f);
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
    else if (c == '\n') fputs("\\n", f);
    else if (c < 0x20) fprintf(f, "\\u%04x", c);
    else fputc(c, f);
  }
  fputc('"', f);
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
  fprintf(f, "<testsuites><testsuite name=\"fgmatrix\" tests=\"%zu\" failures=\"%zu\" "
             "skipped=\"%zu\" time=\"%.3f\">\n", m->n, count(m, "FAIL"), count(m, "SKIP"), total);
  for (size_t i = 0; i < m->n; i++) {
    const matrix_case *c = &m->cases[i];
    fprintf(f, "  <testcase classname=\"");
    xml_text(f, c->scenario);
    fprintf(f, ".%s\" name=\"", c->backend);
    xml_text(f, c->name);
    fprintf(f, "\" time=\"%.3f\">", c->seconds);
    if (c->result && !strcmp(c->result, "FAIL")) {
      fprintf(f, "<failure message=\"");
      xml_text(f, c->why);
      fprintf(f, "\">");
      xml_text(f, c->log);
      fprintf(f, "</failure>");
    } else if (c->result && !strcmp(c->result, "SKIP")) {
      fprintf(f, "<skipped message=\"");
      xml_text(f, c->why);
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
    fprintf(f, "  {\"name\": ");
    json_text(f, c->name);
    fprintf(f, ", \"scenario\": ");
    json_text(f, c->scenario);
    fprintf(f, ", \"backend\": ");
    json_text(f, c->backend);
    fprintf(f, ", \"launcher\": ");
    json_text(f, c->launcher);
    fprintf(f, ", \"processes\": %d, \"expect\": \"%s\", \"result\": ", c->processes,
            c->expect_fail ? "fail" : "pass");
    json_text(f, c->result ? c->result : "NOT RUN");
    fprintf(f, ", \"exit_code\": %d, \"seconds\": %.3f, \"why\": ", c->exit_code, c->seconds);
    json_text(f, c->why ? c->why : "");
    fprintf(f, ", \"source\": ");
    json_text(f, c->source);
    fprintf(f, "}%s\n", i + 1 < m->n ? "," : "");
  }
  fprintf(f, "]}\n");
  return fclose(f) == 0 ? 0 : -1;
}

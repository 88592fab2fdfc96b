/* hang_python.c - a Python rank's place from its traceback (see hang_python.h). */
#include "launcher/hang_python.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/hang_classify.h"

static const char *const library_marks[] = {"/lib/python3", "/site-packages/",
                                            "/dist-packages/", "/fgrun-pyhook/"};

static int is_library(const char *file) {
  if (file[0] == '<') return 1; /* <frozen importlib._bootstrap>, <string> */
  for (size_t i = 0; i < sizeof library_marks / sizeof *library_marks; i++)
    if (strstr(file, library_marks[i])) return 1;
  return 0;
}

static const char *base_name(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

/* One thread's frames, most recent first, as fgrun-stack prints them. */
typedef struct block {
  const char *start, *end;
  int current;
} block;

static const char *line_end(const char *p, const char *end) {
  const char *nl = memchr(p, '\n', (size_t)(end - p));
  return nl ? nl : end;
}

/* The main thread's block in the Python section, or 0. */
static int main_block(const char *text, size_t len, block *out) {
  const char *end = text + len, *p = text;
  int in_python = 0, found = 0;
  block cur = {0};
  for (; p < end; p = line_end(p, end) + 1) {
    const char *e = line_end(p, end);
    const char *q = p;
    while (q < e && *q == ' ') q++;
    if (!strncmp(q, "Python (faulthandler", 20)) {
      in_python = 1;
      continue;
    }
    if (!in_python) continue;
    if (q == p) break; /* the next section (native stacks) starts at column 0 */
    int header = !strncmp(q, "Thread 0x", 9) || !strncmp(q, "Current thread 0x", 17);
    if (header) {
      if (cur.start) {
        cur.end = p;
        if (!(found && out->current)) *out = cur, found = 1;
      }
      cur = (block){.start = e, .current = q[0] == 'C'};
    }
  }
  if (cur.start) {
    cur.end = p < end ? p : end;
    if (!(found && out->current)) *out = cur, found = 1;
  }
  return found;
}

int fg_py_parse(const char *text, size_t len, fg_py_where *out) {
  memset(out, 0, sizeof *out);
  block b = {0};
  if (!main_block(text, len, &b)) return -1;
  out->ok = 1;
  int innermost = 1, take_src = 0;
  for (const char *p = b.start; p < b.end; p = line_end(p, b.end) + 1) {
    const char *e = line_end(p, b.end);
    char line[1024];
    snprintf(line, sizeof line, "%.*s", (int)(e - p), p);
    char file[256], func[64];
    int lineno;
    if (sscanf(line, " File \"%255[^\"]\", line %d in %63s", file, &lineno, func) == 3) {
      take_src = 0;
      if (strstr(file, "/torch/distributed/")) out->in_torch_dist = 1;
      if (is_library(file)) {
        if (innermost) snprintf(out->lib_func, sizeof out->lib_func, "%s", func);
      } else if (!out->file[0]) {
        snprintf(out->file, sizeof out->file, "%s", file);
        snprintf(out->func, sizeof out->func, "%s", func);
        out->line = lineno;
        take_src = 1;
      }
      innermost = 0;
    } else if (take_src) {
      const char *s = line;
      while (*s == ' ') s++;
      if (*s) snprintf(out->src, sizeof out->src, "%.*s", (int)sizeof out->src - 1, s);
      take_src = 0;
    }
  }
  return 0;
}

void fg_py_put_where(fg_buf *b, const fg_py_where *w) {
  if (!w->ok) {
    fg__buf_printf(b, "(no Python traceback)");
    return;
  }
  if (w->file[0]) {
    fg__buf_printf(b, "%s:%d in %s", base_name(w->file), w->line, w->func);
    if (w->src[0]) fg__buf_printf(b, " `%s`", w->src);
    if (w->lib_func[0]) fg__buf_printf(b, " (in %s)", w->lib_func);
  } else {
    fg__buf_printf(b, "library code only (in %s)", w->lib_func[0] ? w->lib_func : "?");
  }
}

int fg_py_same_place(const fg_py_where *a, const fg_py_where *b) {
  return a->ok && b->ok && a->line == b->line && !strcmp(a->file, b->file) &&
         !strcmp(a->lib_func, b->lib_func);
}

void fg_py_put_groups(fg_buf *b, const int *ranks, const fg_py_where *w, int n) {
  int *done = calloc((size_t)(n ? n : 1), sizeof *done);
  int *group = calloc((size_t)(n ? n : 1), sizeof *group);
  if (!done || !group) {
    free(done);
    free(group);
    b->failed = 1;
    return;
  }
  int written = 0;
  for (int i = 0; i < n; i++) {
    if (done[i] || !w[i].ok) continue;
    int count = 0;
    for (int j = i; j < n; j++)
      if (!done[j] && fg_py_same_place(&w[i], &w[j])) {
        done[j] = 1;
        group[count++] = ranks[j];
      }
    char list[512];
    fg_hang_format_ranks(group, count, list, sizeof list);
    fg__buf_printf(b, "%srank%s %s at ", written++ ? "; " : "", count == 1 ? "" : "s", list);
    fg_py_put_where(b, &w[i]);
  }
  free(done);
  free(group);
}

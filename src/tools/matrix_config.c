/* matrix_config.c - reads matrix cases from YAML (libyaml's document API).
 *
 *   defaults: {backend: gloo, launcher: fgrun, timeout: 120}
 *   cases:
 *     - name: dispatcher-2x3-dpdim1
 *       scenario: dataloader-dispatcher
 *       processes: 6
 *       mesh: {dp: 2, mp: 3}      # passed as --dp 2 --mp 3; sizes multiply to processes
 *       args: [--dp-dim, 1]
 *       expect: pass              # or fail, for a fault case
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "common/util.h"
#include "scenarios/names.h"
#include "tools/matrix.h"

typedef struct reader {
  yaml_document_t *doc;
  const char *path;
  char *err;
  size_t errlen;
} reader;

static int fail_at(reader *r, const yaml_node_t *n, const char *fmt, ...) {
  int len = snprintf(r->err, r->errlen, "%s:%zu: ", r->path, n ? n->start_mark.line + 1 : 0);
  va_list ap;
  va_start(ap, fmt);
  if (len >= 0 && (size_t)len < r->errlen) vsnprintf(r->err + len, r->errlen - (size_t)len, fmt, ap);
  va_end(ap);
  return -1;
}

static const char *scalar(const yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static yaml_node_t *child(reader *r, yaml_node_t *map, const char *key) {
  if (!map || map->type != YAML_MAPPING_NODE) return NULL;
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    const char *k = scalar(yaml_document_get_node(r->doc, p->key));
    if (k && !strcmp(k, key)) return yaml_document_get_node(r->doc, p->value);
  }
  return NULL;
}

static int check_keys(reader *r, yaml_node_t *map, const char *const *known, const char *what) {
  for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
    yaml_node_t *kn = yaml_document_get_node(r->doc, p->key);
    const char *k = scalar(kn);
    int ok = 0;
    for (const char *const *q = known; k && *q; q++) ok |= !strcmp(k, *q);
    if (!ok) return fail_at(r, kn, "%s: unknown field '%s'", what, k ? k : "?");
  }
  return 0;
}

/* The case's value, else the defaults', else fallback. */
static const char *field(reader *r, yaml_node_t *c, yaml_node_t *defaults, const char *key,
                         const char *fallback) {
  const char *v = scalar(child(r, c, key));
  if (!v) v = scalar(child(r, defaults, key));
  return v ? v : fallback;
}

static char *dup(const char *s) { return s ? strdup(s) : NULL; }

static int load_args(reader *r, yaml_node_t *n, matrix_case *c) {
  if (!n) return 0;
  if (n->type == YAML_SCALAR_NODE) { /* "--dp 2 --mp 2": split on spaces */
    char *copy = strdup(scalar(n)), *save = NULL;
    for (char *t = strtok_r(copy, " \t", &save); t; t = strtok_r(NULL, " \t", &save)) {
      if (c->nargs == MATRIX_MAX_ARGS) {
        free(copy);
        return fail_at(r, n, "case '%s': more than %d args", c->name, MATRIX_MAX_ARGS);
      }
      c->args[c->nargs++] = strdup(t);
    }
    free(copy);
    return 0;
  }
  if (n->type != YAML_SEQUENCE_NODE)
    return fail_at(r, n, "case '%s': args must be a list or a string", c->name);
  for (yaml_node_item_t *i = n->data.sequence.items.start; i < n->data.sequence.items.top; i++) {
    const char *v = scalar(yaml_document_get_node(r->doc, *i));
    if (!v) return fail_at(r, n, "case '%s': args must be scalars", c->name);
    if (c->nargs == MATRIX_MAX_ARGS)
      return fail_at(r, n, "case '%s': more than %d args", c->name, MATRIX_MAX_ARGS);
    c->args[c->nargs++] = strdup(v);
  }
  return 0;
}

static int load_mesh(reader *r, yaml_node_t *n, matrix_case *c) {
  if (!n) return 0;
  if (n->type != YAML_MAPPING_NODE)
    return fail_at(r, n, "case '%s': mesh must map dimension names to sizes, e.g. {dp: 2, mp: 2}",
                   c->name);
  long product = 1;
  for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
    const char *k = scalar(yaml_document_get_node(r->doc, p->key));
    const char *v = scalar(yaml_document_get_node(r->doc, p->value));
    int size;
    if (!k || !v || fg__parse_int(v, 1, 4096, &size) != 0)
      return fail_at(r, n, "case '%s': mesh sizes must be positive integers", c->name);
    if (c->mesh_dims == MATRIX_MAX_MESH)
      return fail_at(r, n, "case '%s': more than %d mesh dimensions", c->name, MATRIX_MAX_MESH);
    c->mesh_names[c->mesh_dims] = strdup(k);
    c->mesh_sizes[c->mesh_dims++] = size;
    product *= size;
  }
  if (product != c->processes)
    return fail_at(r, n, "case '%s': mesh sizes multiply to %ld but processes is %d", c->name,
                   product, c->processes);
  return 0;
}

static const char *const case_keys[] = {"name", "scenario", "processes", "mesh", "backend",
                                        "launcher", "args", "timeout", "expect", NULL};
static const char *const default_keys[] = {"backend", "launcher", "timeout", "processes",
                                           "expect", NULL};
/* What fgscenario runs (its own spellings: build-sync, checkpoint_integration, ... too). */
static const char *const scenarios[] = {FG_SCENARIO_NAMES, FG_SCENARIO_ALL, NULL};

static int known_scenario(const char *name) {
  for (const char *const *s = scenarios; *s; s++)
    if (fg__scenario_name_eq(name, *s)) return 1;
  return 0;
}

/* Case names become file names (--logs) and JUnit names: keep them plain. */
static int plain_name(const char *name) {
  return name[0] && strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                 "0123456789-_.") == strlen(name) && name[0] != '.';
}

static int load_case(reader *r, matrix *m, yaml_node_t *n, yaml_node_t *defaults) {
  if (n->type != YAML_MAPPING_NODE) return fail_at(r, n, "each case must be a mapping");
  if (check_keys(r, n, case_keys, "case")) return -1;
  const char *name = scalar(child(r, n, "name"));
  const char *scen = scalar(child(r, n, "scenario"));
  if (!name) return fail_at(r, n, "a case has no name");
  if (!plain_name(name))
    return fail_at(r, child(r, n, "name"), "case name '%s' may hold only letters, digits, '-', '_' and '.'", name);
  if (!scen) return fail_at(r, n, "case '%s': no scenario", name);
  if (!known_scenario(scen))
    return fail_at(r, child(r, n, "scenario"), "case '%s': unknown scenario '%s' (one of: "
                   FG_SCENARIO_LIST ", " FG_SCENARIO_ALL ")", name, scen);
  if (m->n == m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 32;
    matrix_case *p = realloc(m->cases, cap * sizeof *p);
    if (!p) return fail_at(r, n, "out of memory");
    m->cases = p;
    m->cap = cap;
  }
  matrix_case *c = &m->cases[m->n++];
  memset(c, 0, sizeof *c);
  c->name = strdup(name);
  c->scenario = strdup(scen);
  c->backend = dup(field(r, n, defaults, "backend", "gloo"));
  c->launcher = dup(field(r, n, defaults, "launcher", "fgrun"));
  char src[600];
  snprintf(src, sizeof src, "%s:%zu", r->path, n->start_mark.line + 1);
  c->source = strdup(src);
  const char *procs = field(r, n, defaults, "processes", NULL);
  if (!procs || fg__parse_int(procs, 1, 4096, &c->processes) != 0)
    return fail_at(r, n, "case '%s': processes must be a positive integer", name);
  const char *timeout = field(r, n, defaults, "timeout", "120");
  if (fg__parse_seconds(timeout, &c->timeout) != 0 || c->timeout <= 0)
    return fail_at(r, n, "case '%s': timeout must be a number of seconds", name);
  const char *expect = field(r, n, defaults, "expect", NULL);
  if (expect && strcmp(expect, "pass") && strcmp(expect, "fail"))
    return fail_at(r, n, "case '%s': expect must be pass or fail", name);
  c->expect_fail = expect && !strcmp(expect, "fail");
  if (strcmp(c->launcher, "fgrun") && strcmp(c->launcher, "mpirun"))
    return fail_at(r, n, "case '%s': launcher must be fgrun or mpirun", name);
  if (strcmp(c->backend, "gloo") && strcmp(c->backend, "mpi") && strcmp(c->backend, "nccl"))
    return fail_at(r, n, "case '%s': backend must be gloo, mpi or nccl", name);
  if (load_mesh(r, child(r, n, "mesh"), c) || load_args(r, child(r, n, "args"), c)) return -1;
  for (size_t i = 0; i + 1 < m->n; i++)
    if (!strcmp(m->cases[i].name, name))
      return fail_at(r, n, "case name '%s' is used twice (also at %s)", name, m->cases[i].source);
  return 0;
}

int matrix_load(matrix *m, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) return fg__fail(err, errlen, -1, "%s: %s", path, strerror(errno));
  yaml_parser_t parser;
  yaml_document_t doc;
  yaml_parser_initialize(&parser);
  yaml_parser_set_input_file(&parser, f);
  reader r = {&doc, path, err, errlen};
  int rc = 0;
  if (!yaml_parser_load(&parser, &doc)) {
    rc = fg__fail(err, errlen, -1, "%s:%zu: %s", path, parser.problem_mark.line + 1,
                 parser.problem ? parser.problem : "malformed YAML");
    yaml_parser_delete(&parser);
    fclose(f);
    return rc;
  }
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  yaml_node_t *cases = child(&r, root, "cases");
  yaml_node_t *defaults = child(&r, root, "defaults");
  static const char *const top_keys[] = {"defaults", "cases", NULL};
  if (!root || root->type != YAML_MAPPING_NODE)
    rc = fail_at(&r, root, "the top level must be a mapping with 'cases'");
  else if (check_keys(&r, root, top_keys, "top level"))
    rc = -1;
  else if (defaults && (defaults->type != YAML_MAPPING_NODE || check_keys(&r, defaults, default_keys, "defaults")))
    rc = defaults->type != YAML_MAPPING_NODE ? fail_at(&r, defaults, "defaults must be a mapping") : -1;
  else if (!cases || cases->type != YAML_SEQUENCE_NODE)
    rc = fail_at(&r, cases ? cases : root, "'cases' must be a list");
  else
    for (yaml_node_item_t *i = cases->data.sequence.items.start;
         rc == 0 && i < cases->data.sequence.items.top; i++)
      rc = load_case(&r, m, yaml_document_get_node(&doc, *i), defaults);
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  fclose(f);
  return rc;
}

void matrix_case_free(matrix_case *c) {
  free(c->name);
  free(c->scenario);
  free(c->backend);
  free(c->launcher);
  free(c->source);
  free(c->command);
  free(c->log);
  free(c->why);
  for (int k = 0; k < c->nargs; k++) free(c->args[k]);
  for (int k = 0; k < c->mesh_dims; k++) free(c->mesh_names[k]);
  memset(c, 0, sizeof *c);
}

void matrix_free(matrix *m) {
  for (size_t i = 0; i < m->n; i++) matrix_case_free(&m->cases[i]);
  free(m->cases);
  memset(m, 0, sizeof *m);
}

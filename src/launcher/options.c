/* options.c - the option table and the generic parser that walks it.
 *
 * Every option is one row: its canonical name (underscores; the dashed spelling is
 * accepted too), an optional short letter, whether it takes a value, its default, help
 * text, and the function that sets its field. The parser collects one raw string per
 * row from argv, then PET_<NAME>, then the default, and hands it to that function; checks
 * that involve several options come last (options_check.c). */
#include "launcher/options.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "fg/fg.h"
#include "scenarios/names.h"

typedef int (*fg_opt_setter)(fg_launch_opts *o, const char *v, char *err, size_t errlen);

enum { OPT_VALUE = 0, OPT_FLAG = 1 };
enum { OPT_ENV = 0, OPT_NO_ENV = 1 };

typedef struct fg_opt_desc {
  const char *name;
  char short_name;
  int kind;
  int env;
  const char *metavar;
  const char *def;
  const char *group;
  const char *help;
  fg_opt_setter set;
} fg_opt_desc;

/* Variables of fgrun's (and torchrun 2.x's prefix template) for some options, read after
 * PET_<NAME>. */
static const struct {
  const char *option, *var;
} own_vars[] = {{"hang_timeout", "FG_HANG_TIMEOUT"}, {"store_token", "FG_STORE_TOKEN"},
                {"log_line_prefix_template", "TORCHELASTIC_LOG_LINE_PREFIX_TEMPLATE"}};

static const char *own_var(const char *option) {
  for (size_t i = 0; i < sizeof own_vars / sizeof own_vars[0]; i++)
    if (!strcmp(own_vars[i].option, option)) return own_vars[i].var;
  return NULL;
}

/* --- setting one value ----------------------------------------------------------------- */

static int set_nnodes(fg_launch_opts *o, const char *v, char *err, size_t errlen) {
  return fg_parse_nnodes(v, &o->nnodes_min, &o->nnodes_max, err, errlen);
}

static int set_int(int *dst, const char *v, int min, int max, char *err, size_t errlen) {
  if (fg__parse_int(v, min, max, dst) != 0)
    return fg__fail(err, errlen, -EINVAL, "expected a whole number from %d to %d, got '%s'",
                   min, max, v);
  return 0;
}

static int set_node_rank(fg_launch_opts *o, const char *v, char *err, size_t errlen) {
  o->node_rank_given = 1;
  return set_int(&o->node_rank, v, 0, 1 << 20, err, errlen);
}

#define INT_SETTER(field, min, max)                                                     \
  static int set_##field(fg_launch_opts *o, const char *v, char *err, size_t errlen) {  \
    return set_int(&o->field, v, min, max, err, errlen);                                \
  }
INT_SETTER(master_port, 0, 65535)
INT_SETTER(max_restarts, 0, 1 << 20)

/* `expected` says in the message what a valid value is. */
#define SECONDS_SETTER(field, positive, expected)                                       \
  static int set_##field(fg_launch_opts *o, const char *v, char *err, size_t errlen) {  \
    if (fg__parse_seconds(v, &o->field) != 0 || ((positive) && o->field <= 0))          \
      return fg__fail(err, errlen, -EINVAL, "expected " expected ", got '%s'", v);      \
    return 0;                                                                           \
  }
SECONDS_SETTER(monitor_interval, 1, "a positive number of seconds")
SECONDS_SETTER(term_grace, 0, "a number of seconds")
SECONDS_SETTER(hang_timeout, 0, "a number of seconds (0: off)")

/* The index of v among words[], or an error that lists them all ("expected a, b or c"). */
static int pick_word(const char *v, const char *const *words, size_t n, char *err,
                     size_t errlen) {
  char list[128] = "";
  for (size_t i = 0; i < n; i++) {
    if (strcmp(v, words[i]) == 0) return (int)i;
    size_t used = strlen(list);
    snprintf(list + used, sizeof list - used, "%s%s", i == 0 ? "" : i + 1 < n ? ", " : " or ",
             words[i]);
  }
  return fg__fail(err, errlen, -EINVAL, "expected %s, got '%s'", list, v);
}

/* `store` sets the field from v or from i, the index of its word. */
#define WORD_SETTER(name, store, ...)                                                   \
  static int set_##name(fg_launch_opts *o, const char *v, char *err, size_t errlen) {  \
    static const char *const words[] = {__VA_ARGS__};                                  \
    int i = pick_word(v, words, FG_ARRAY_LEN(words), err, errlen);                     \
    if (i < 0) return i;                                                               \
    store;                                                                             \
    return 0;                                                                          \
  }
WORD_SETTER(rdzv_backend, o->rdzv_backend = v, "static", "c10d")
WORD_SETTER(start_method, o->start_method = v, "spawn", "fork", "forkserver")
WORD_SETTER(pmix, o->pmix = (enum fg_pmix_mode)i, [FG_PMIX_AUTO] = "auto", [FG_PMIX_ON] = "on",
            [FG_PMIX_OFF] = "off")
WORD_SETTER(hang_action, o->hang_kill = i == 1, "report", "kill")
WORD_SETTER(hang_stacks, o->hang_stacks = i, "none", "culprit", "all") /* enum fg_hang_stacks */

static int set_rdzv_endpoint(fg_launch_opts *o, const char *v, char *err, size_t errlen) {
  (void)err, (void)errlen;
  o->rdzv_endpoint = *v ? v : NULL;
  return 0;
}

static int set_flag(int *dst, const char *v, char *err, size_t errlen) {
  if (fg_parse_bool(v, dst) != 0)
    return fg__fail(err, errlen, -EINVAL, "expected 1 or 0, got '%s'", v);
  return 0;
}

#define FLAG_SETTER(field)                                                              \
  static int set_##field(fg_launch_opts *o, const char *v, char *err, size_t errlen) {  \
    return set_flag(&o->field, v, err, errlen);                                         \
  }
FLAG_SETTER(standalone)
FLAG_SETTER(module)
FLAG_SETTER(no_python)
FLAG_SETTER(run_path)
FLAG_SETTER(no_prefix)
FLAG_SETTER(show_help)
FLAG_SETTER(show_version)

enum { ANY = 0, NONEMPTY = 1 };
#define STRING_SETTER(field, which)                                                     \
  static int set_##field(fg_launch_opts *o, const char *v, char *err, size_t errlen) {  \
    if ((which) == NONEMPTY && !*v)                                                     \
      return fg__fail(err, errlen, -EINVAL, "must not be empty");                       \
    o->field = v;                                                                       \
    return 0;                                                                           \
  }
STRING_SETTER(master_addr, ANY)
STRING_SETTER(role, ANY)
STRING_SETTER(log_dir, ANY)
STRING_SETTER(rdzv_id, NONEMPTY)
STRING_SETTER(python, NONEMPTY)
STRING_SETTER(trace, NONEMPTY)

/* The message never repeats the token. */
static int set_store_token(fg_launch_opts *o, const char *v, char *err, size_t errlen) {
  if (strlen(v) > 1024) return fg__fail(err, errlen, -EINVAL, "longer than 1024 bytes");
  o->store_token = *v ? v : NULL;
  return 0;
}

static int set_redirects(fg_launch_opts *o, const char *v, char *err, size_t errlen) {
  return fg_parse_std_spec(v, &o->redirects, err, errlen);
}

static int set_tee(fg_launch_opts *o, const char *v, char *err, size_t errlen) {
  return fg_parse_std_spec(v, &o->tee, err, errlen);
}

static int set_prefix_template(fg_launch_opts *o, const char *v, char *err, size_t errlen) {
  if (fg_check_prefix_template(v, err, errlen) != 0) return -EINVAL;
  o->prefix_template = v;
  return 0;
}

static int set_log_level(fg_launch_opts *o, const char *v, char *err, size_t errlen) {
  if (fg__log_level_parse(v) < 0)
    return fg__fail(err, errlen, -EINVAL, "expected error, warn, info or debug, got '%s'", v);
  o->log_level = v;
  return 0;
}

/* --- the table --------------------------------------------------------------------------- */

#define G_SIZE "Workers and nodes"
#define G_RDZV "Rendezvous and store"
#define G_LAUNCH "The program"
#define G_OUTPUT "Output and logs"
#define G_SIGNAL "Signals and teardown"
#define G_DIAG "Hangs and timelines"
#define G_OTHER "Other"

static const fg_opt_desc options[] = {
    {"nnodes", 0, OPT_VALUE, OPT_ENV, "MIN:MAX", "1:1", G_SIZE,
     "Number of nodes, N or MIN:MAX (MIN:MAX needs --rdzv_backend c10d). Each node runs one "
     "fgrun; see docs/cluster.md.",
     set_nnodes},
    {"nproc_per_node", 0, OPT_VALUE, OPT_ENV, "N", "1", G_SIZE,
     "Workers on this node: a number, auto (GPUs if any, else CPUs), cpu or gpu.",
     fg_parse_nproc},
    {"node_rank", 0, OPT_VALUE, OPT_ENV, "N", NULL, G_SIZE,
     "Rank of this node, 0 to nnodes-1 (default 0). Required on every node with the static "
     "rendezvous and --nnodes > 1; c10d assigns node ranks itself.",
     set_node_rank},

    {"rdzv_backend", 0, OPT_VALUE, OPT_ENV, "NAME", "static", G_RDZV,
     "static (node 0 hosts the store at --master_addr:--master_port) or c10d (the agent "
     "that can bind --rdzv_endpoint hosts it, or an fgstore there does).",
     set_rdzv_backend},
    {"rdzv_endpoint", 0, OPT_VALUE, OPT_ENV, "HOST:PORT", "", G_RDZV,
     "Where the store listens (c10d: required, port 29400 if omitted; static: replaces "
     "--master_addr:--master_port).",
     set_rdzv_endpoint},
    {"rdzv_id", 0, OPT_VALUE, OPT_ENV, "ID", "none", G_RDZV,
     "Job id, given to the workers as TORCHELASTIC_RUN_ID.", set_rdzv_id},
    {"rdzv_conf", 0, OPT_VALUE, OPT_ENV, "K=V,...", "", G_RDZV,
     "Rendezvous settings: join_timeout (600), last_call_timeout (30), close_timeout (30), "
     "read_timeout (60), keep_alive_interval (5), keep_alive_max_attempt (3), is_host.",
     fg_parse_rdzv_conf},
    {"standalone", 0, OPT_FLAG, OPT_ENV, NULL, NULL, G_RDZV,
     "Private store on 127.0.0.1 and a port the OS picks, and a fresh random run id; "
     "overrides --rdzv_* and --master_*. Two such jobs never collide.",
     set_standalone},
    {"master_addr", 0, OPT_VALUE, OPT_ENV, "ADDR", "127.0.0.1", G_RDZV,
     "Address the store binds to, given to the workers as MASTER_ADDR.", set_master_addr},
    {"master_port", 0, OPT_VALUE, OPT_ENV, "PORT", "29500", G_RDZV,
     "Port the store binds to, given to the workers as MASTER_PORT.", set_master_port},
    {"store_token", 0, OPT_VALUE, OPT_ENV, "TOKEN", NULL, G_RDZV,
     "Shared secret every store client must present first (default $FG_STORE_TOKEN); the "
     "workers get it as FG_STORE_TOKEN. torch's own TCPStore clients cannot present it.",
     set_store_token},
    {"local_addr", 0, OPT_VALUE, OPT_ENV, "ADDR", NULL, G_RDZV,
     "The address this node advertises to the others (c10d orders nodes by it); default: "
     "the one it reaches the store from.", fg_parse_local_addr},

    {"max_restarts", 0, OPT_VALUE, OPT_ENV, "N", "0", G_LAUNCH,
     "Restarts of the whole worker group before the job fails.", set_max_restarts},
    {"monitor_interval", 0, OPT_VALUE, OPT_ENV, "SECONDS", "5", G_LAUNCH,
     "Period of background checks. Worker exits are seen at once regardless.",
     set_monitor_interval},
    {"start_method", 0, OPT_VALUE, OPT_ENV, "METHOD", "spawn", G_LAUNCH,
     "spawn, fork or forkserver: accepted for torchrun compatibility and ignored (workers "
     "are always fresh processes).",
     set_start_method},
    {"role", 0, OPT_VALUE, OPT_ENV, "NAME", "default", G_LAUNCH,
     "Role of the workers (ROLE_NAME).", set_role},
    {"module", 'm', OPT_FLAG, OPT_ENV, NULL, NULL, G_LAUNCH,
     "Run PROGRAM as a Python module, like python -m.", set_module},
    {"no_python", 0, OPT_FLAG, OPT_ENV, NULL, NULL, G_LAUNCH,
     "Run PROGRAM directly (looked up on PATH), not through Python.", set_no_python},
    {"run_path", 0, OPT_FLAG, OPT_ENV, NULL, NULL, G_LAUNCH,
     "Run PROGRAM with runpy.run_path in the interpreter; takes precedence over --no_python.",
     set_run_path},
    {"python", 0, OPT_VALUE, OPT_ENV, "PATH", NULL, G_LAUNCH,
     "Interpreter for Python programs (default: $PYTHON_EXEC, else python3 from PATH).",
     set_python},
    {"pmix", 0, OPT_VALUE, OPT_ENV, "auto|on|off", "auto", G_LAUNCH,
     "PMIx server for MPI programs, so Open MPI ranks start as one world without mpirun: "
     "auto (when libpmix loads, else a warning), on (required) or off.",
     set_pmix},
    {"numa_binding", 0, OPT_VALUE, OPT_NO_ENV, "MODE", NULL, G_LAUNCH,
     "Bind each worker to CPUs (before it starts): node, socket, exclusive (cores of its "
     "own) or core-complex (a shared last-level cache of its own); see docs/cli.md.",
     fg_parse_numa_binding},

    {"log_dir", 0, OPT_VALUE, OPT_ENV, "DIR", NULL, G_OUTPUT,
     "Keep error and log files in DIR/<run id>/attempt_<n>/<local rank>/ (DIR/<run id>.1 ... "
     "when that exists).",
     set_log_dir},
    {"redirects", 'r', OPT_VALUE, OPT_ENV, "STD", "0", G_OUTPUT,
     "Send streams to log files only: 0 none, 1 stdout, 2 stderr, 3 both, or per local "
     "rank as 0:1,1:3.",
     set_redirects},
    {"tee", 't', OPT_VALUE, OPT_ENV, "STD", "0", G_OUTPUT,
     "Copy streams to log files and the console (values as --redirects).", set_tee},
    {"local_ranks_filter", 0, OPT_VALUE, OPT_ENV, "R,...", "", G_OUTPUT,
     "Only these local ranks' output reaches the console (log files get everything).",
     fg_parse_ranks_filter},
    {"log_line_prefix_template", 0, OPT_VALUE, OPT_ENV, "TEMPLATE", NULL, G_OUTPUT,
     "Prefix of each console line; ${rank}, ${local_rank}, ${role_name} and ${group_rank} "
     "(the node rank) are filled in (default: [rank${rank}]:, with --nnodes > 1 "
     "[node${group_rank} rank${rank}]:).",
     set_prefix_template},
    {"no_prefix", 0, OPT_FLAG, OPT_ENV, NULL, NULL, G_OUTPUT,
     "Pass worker output to the console unchanged, without a prefix.", set_no_prefix},
    {"log_level", 0, OPT_VALUE, OPT_ENV, "LEVEL", "info", G_OUTPUT,
     "fgrun's own messages: error, warn, info or debug.", set_log_level},
    {"event_log_handler", 0, OPT_VALUE, OPT_ENV, "NAME", "null", G_OUTPUT,
     "null, or console: one JSON line on stderr per torchelastic event.",
     fg_parse_event_log_handler},
    {"logs_specs", 0, OPT_VALUE, OPT_NO_ENV, "NAME", NULL, G_OUTPUT,
     "torchrun's LogsSpecs plugin: refused (fgrun runs no Python); see --log_dir.",
     fg_refuse_logs_specs},

    {"signals_to_handle", 0, OPT_VALUE, OPT_ENV, "SIG,...", "SIGTERM,SIGINT,SIGHUP,SIGQUIT",
     G_SIGNAL,
     "Signals passed on to every worker's process group; then the job stops and fgrun exits "
     "with 128+signal.",
     fg_parse_signals},
    {"term_grace", 0, OPT_VALUE, OPT_ENV, "SECONDS", "30", G_SIGNAL,
     "How long workers get between SIGTERM (or a passed-on signal) and SIGKILL.",
     set_term_grace},

    {"hang_timeout", 0, OPT_VALUE, OPT_ENV, "SECONDS", "0", G_DIAG,
     "When a rank has waited this long in one collective, barrier or store barrier (or, for "
     "ranks that mark nothing, no rank wrote output for this long), name the rank that holds "
     "the others up, where every rank is, and the culprit's stack (0: off). Also read from "
     "FG_HANG_TIMEOUT.",
     set_hang_timeout},
    {"hang_action", 0, OPT_VALUE, OPT_ENV, "report|kill", "report", G_DIAG,
     "After a hang report: report (the job goes on; the library's own timeout, FG_TIMEOUT, "
     "ends the wait) or kill (stop the attempt like a failure; fgrun exits 124 when no "
     "restart is left).",
     set_hang_action},
    {"hang_stacks", 0, OPT_VALUE, OPT_ENV, "none|culprit|all", "culprit", G_DIAG,
     "Which ranks' stacks a hang report shows: the rank it names as holding the others up "
     "(Python traceback and native frames, read from outside without resuming a stopped "
     "rank), every rank, or none.",
     set_hang_stacks},
    {"trace", 0, OPT_VALUE, OPT_ENV, "FILE", NULL, G_DIAG,
     "Write the run's timeline to FILE as Chrome trace events (Perfetto, chrome://tracing): "
     "a track per rank with spawn, rendezvous, every collective and barrier, restarts and "
     "exit.",
     set_trace},

    {"help", 'h', OPT_FLAG, OPT_NO_ENV, NULL, NULL, G_OTHER, "Show this help and exit.",
     set_show_help},
    {"version", 0, OPT_FLAG, OPT_NO_ENV, NULL, NULL, G_OTHER, "Show the version and exit.",
     set_show_version},
};

#define NOPTIONS FG_ARRAY_LEN(options)

/* --- parsing ----------------------------------------------------------------------------- */

/* Compares an argv spelling (dashes or underscores, n bytes) with a canonical name. */
static int name_matches(const char *arg, size_t n, const char *name, int allow_prefix) {
  size_t i = 0;
  for (; i < n; i++) {
    char c = arg[i] == '-' ? '_' : arg[i];
    if (name[i] == '\0' || c != name[i]) return 0;
  }
  return allow_prefix || name[i] == '\0';
}

/* Exact name, else an unambiguous prefix, as argparse allows. */
static int find_long(const char *arg, size_t n, char *err, size_t errlen) {
  for (size_t i = 0; i < NOPTIONS; i++)
    if (name_matches(arg, n, options[i].name, 0)) return (int)i;
  int found = -1, count = 0;
  char names[256] = "";
  for (size_t i = 0; i < NOPTIONS; i++)
    if (name_matches(arg, n, options[i].name, 1)) {
      found = (int)i;
      count++;
      size_t used = strlen(names);
      snprintf(names + used, sizeof names - used, "%s--%s", count > 1 ? ", " : "",
               options[i].name);
    }
  if (count == 1) return found;
  if (count > 1)
    return fg__fail(err, errlen, -EINVAL, "ambiguous option --%.*s (could be %s)", (int)n, arg,
                   names);
  return fg__fail(err, errlen, -EINVAL, "unknown option --%.*s (see fgrun --help)", (int)n, arg);
}

static int find_short(char c) {
  for (size_t i = 0; i < NOPTIONS; i++)
    if (options[i].short_name == c) return (int)i;
  return -1;
}

static int looks_like_option(const char *s) {
  if (s[0] != '-' || s[1] == '\0') return 0;
  double ignored;
  return fg__parse_seconds(s + 1, &ignored) != 0; /* "-1" is a value, not an option */
}

/* Reads the options in front of PROGRAM into raw[]; returns the index of PROGRAM. */
static int scan_argv(int argc, char **argv, const char **raw, char *err, size_t errlen) {
  int i = 1;
  while (i < argc) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) return i + 1;
    if (a[0] != '-' || a[1] == '\0') return i;
    int idx;
    const char *inline_value = NULL;
    char shown[64];
    if (a[1] == '-') {
      const char *eq = strchr(a + 2, '=');
      size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
      if ((idx = find_long(a + 2, n, err, errlen)) < 0) return idx;
      if (eq) inline_value = eq + 1;
      snprintf(shown, sizeof shown, "--%s", options[idx].name);
    } else {
      if ((idx = find_short(a[1])) < 0)
        return fg__fail(err, errlen, -EINVAL, "unknown option %s (see fgrun --help)", a);
      if (a[2]) inline_value = a[2] == '=' ? a + 3 : a + 2;
      snprintf(shown, sizeof shown, "-%c", a[1]);
    }
    const fg_opt_desc *d = &options[idx];
    i++;
    if (d->kind == OPT_FLAG) {
      if (inline_value)
        return fg__fail(err, errlen, -EINVAL, "%s takes no value (got '%s')", shown,
                       inline_value);
      raw[idx] = "1";
      continue;
    }
    if (!inline_value) {
      if (i >= argc || looks_like_option(argv[i]))
        return fg__fail(err, errlen, -EINVAL, "%s needs a value (%s)", shown, d->metavar);
      inline_value = argv[i++];
    }
    raw[idx] = inline_value;
  }
  return i;
}

static void env_name(const char *name, char *out, size_t outlen) {
  size_t n = (size_t)snprintf(out, outlen, "PET_%s", name);
  for (size_t i = 4; i < n && i < outlen; i++)
    if (out[i] >= 'a' && out[i] <= 'z') out[i] = (char)(out[i] - 'a' + 'A');
}

int fg_opts_parse(fg_launch_opts *o, int argc, char **argv, char *err, size_t errlen) {
  memset(o, 0, sizeof *o);
  const char *raw[NOPTIONS] = {0};
  int prog = scan_argv(argc, argv, raw, err, errlen);
  if (prog < 0) return prog;

  char detail[512];
  for (size_t i = 0; i < NOPTIONS; i++) {
    const fg_opt_desc *d = &options[i];
    char source[80];
    snprintf(source, sizeof source, "--%s", d->name);
    const char *v = raw[i];
    if (!v && d->env == OPT_ENV) {
      char var[64];
      env_name(d->name, var, sizeof var);
      if ((v = getenv(var)) != NULL) snprintf(source, sizeof source, "%s", var);
    }
    const char *own = v ? NULL : own_var(d->name);
    if (own && (v = getenv(own)) != NULL) snprintf(source, sizeof source, "%s", own);
    if (!v) v = d->kind == OPT_FLAG ? "0" : d->def;
    if (!v) continue;
    int rc = d->set(o, v, detail, sizeof detail);
    if (rc < 0) return fg__fail(err, errlen, rc, "%s: %s", source, detail);
    if (o->show_help || o->show_version) return 0;
  }
  if (prog >= argc)
    return fg__fail(err, errlen, -EINVAL, "missing PROGRAM to run (see fgrun --help)");
  o->program = argv[prog];
  o->program_args = argv + prog + 1;
  o->nprogram_args = argc - prog - 1;
  return fg__opts_check(o, err, errlen);
}

void fg_opts_free(fg_launch_opts *o) {
  free(o->rdzv_conf);
  free(o->rdzv_conf_text);
  free(o->redirects.map);
  free(o->tee.map);
  free(o->ranks_filter);
  o->rdzv_conf = NULL;
  o->rdzv_conf_text = NULL;
  o->redirects.map = o->tee.map = NULL;
  o->ranks_filter = NULL;
}

/* --- help -------------------------------------------------------------------------------- */

/* Help text as indented lines of at most HELP_WIDTH columns, broken at spaces. */
static void put_wrapped(int fd, const char *text) {
  enum { INDENT = 8, HELP_WIDTH = 92 };
  const char *p = text;
  while (*p) {
    size_t n = strlen(p);
    if (n > HELP_WIDTH - INDENT) {
      n = HELP_WIDTH - INDENT;
      while (n > 0 && p[n] != ' ') n--;
      if (n == 0) n = strcspn(p, " ");
    }
    dprintf(fd, "%*s%.*s\n", INDENT, "", (int)n, p);
    p += n;
    while (*p == ' ') p++;
  }
}

void fg_opts_usage(int fd) {
  dprintf(fd,
          "usage: fgrun [options] PROGRAM|SCENARIO [args...]\n"
          "\n"
          "Starts nproc_per_node copies of PROGRAM with torchrun's environment (RANK, "
          "WORLD_SIZE,\nMASTER_ADDR, MASTER_PORT, ...), hosts the store they rendezvous on, "
          "and stops them all\nwhen one fails. PROGRAM is a built-in scenario\n(" FG_SCENARIO_LIST
          ", " FG_SCENARIO_ALL ";\n'-' or '_' either way), a *.py script (run with python3 -u), "
          "an executable, or with\n-m a Python module. Unset options are read from PET_<NAME> "
          "(e.g. PET_NPROC_PER_NODE=4,\nPET_STANDALONE=1).\n");
  const char *group = NULL;
  for (size_t i = 0; i < NOPTIONS; i++) {
    const fg_opt_desc *d = &options[i];
    if (!group || strcmp(group, d->group) != 0) {
      group = d->group;
      dprintf(fd, "\n%s:\n", group);
    }
    char spell[160];
    char dashed[64];
    snprintf(dashed, sizeof dashed, "%s", d->name);
    for (char *p = dashed; *p; p++)
      if (*p == '_') *p = '-';
    int n = 0;
    if (d->short_name) n += snprintf(spell + n, sizeof spell - (size_t)n, "-%c, ", d->short_name);
    if (strcmp(dashed, d->name) != 0)
      n += snprintf(spell + n, sizeof spell - (size_t)n, "--%s, ", dashed);
    n += snprintf(spell + n, sizeof spell - (size_t)n, "--%s", d->name);
    if (d->metavar) snprintf(spell + n, sizeof spell - (size_t)n, " %s", d->metavar);
    char text[768];
    int len = snprintf(text, sizeof text, "%s", d->help);
    if (d->def && *d->def && len > 0 && (size_t)len < sizeof text)
      snprintf(text + len, sizeof text - (size_t)len, " (default: %s)", d->def);
    dprintf(fd, "  %s\n", spell);
    put_wrapped(fd, text);
  }
  dprintf(fd,
          "\nExit status: 0 when every worker succeeded; the failing worker's exit code "
          "(128+N for\nsignal N) when the job failed; 128+N when fgrun stopped on signal N; "
          "2 for bad usage.\n");
}

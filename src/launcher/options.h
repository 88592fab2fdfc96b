/* options.h - fgrun's command line: torchrun 1.13's options plus a few of fgrun's own.
 *
 * One table (options.c) describes every option: both spellings, its PET_ environment
 * variable, default and help. Parsing fills an fg_launch_opts; strings point into argv,
 * the environment or static defaults, so only the parsed lists are owned. */
#ifndef FG_LAUNCHER_OPTIONS_H
#define FG_LAUNCHER_OPTIONS_H

#include <stddef.h>

#include "launcher/numa.h"

/* torchrun's Std: which of a worker's streams go to a log file. */
enum fg_std { FG_STD_NONE = 0, FG_STD_OUT = 1, FG_STD_ERR = 2, FG_STD_ALL = 3 };

/* --redirects / --tee: one value for every local rank ("3"), or a map ("0:1,1:3") where
 * local ranks not named get FG_STD_NONE. */
typedef struct fg_std_spec {
  int all;
  int nmap; /* 0: `all` applies to every rank */
  struct fg_std_pair {
    int local_rank;
    int std;
  } *map;
} fg_std_spec;

enum fg_nproc_kind { FG_NPROC_NUMBER, FG_NPROC_AUTO, FG_NPROC_CPU, FG_NPROC_GPU };

/* --pmix: the PMIx server for MPI programs. auto: on when libpmix loads. */
enum fg_pmix_mode { FG_PMIX_AUTO, FG_PMIX_ON, FG_PMIX_OFF };

typedef struct fg_conf_pair {
  char *key;
  char *value;
} fg_conf_pair;

#define FG_MAX_SIGNALS 64

/* --rdzv_conf read into numbers: torchrun's keys and defaults (seconds). */
typedef struct fg_rdzv_conf {
  double join_timeout;        /* join_timeout (static: also timeout): a round must form */
  double last_call_timeout;   /* after MIN nodes joined, wait this long for more */
  double close_timeout;       /* the job is closed: peers get this long to notice */
  double read_timeout;        /* connecting to the store, and each store call */
  double keep_alive_interval; /* keep_alive_interval (or heartbeat): between keep-alives */
  int keep_alive_max_attempt; /* a node is dead after this many missed keep-alives */
  int is_host;                /* is_host: 1 must host the store, 0 never; -1 if it can bind */
} fg_rdzv_conf;

typedef struct fg_launch_opts {
  /* worker and node counts */
  int nnodes_min, nnodes_max;
  enum fg_nproc_kind nproc_kind;
  int nproc; /* for FG_NPROC_NUMBER; the others are resolved by fg_resolve_nproc */
  int node_rank;
  int node_rank_given; /* on the command line or in PET_NODE_RANK */

  /* rendezvous and store */
  const char *rdzv_backend; /* "static" or "c10d" */
  const char *rdzv_endpoint;
  const char *rdzv_id;
  fg_conf_pair *rdzv_conf;
  int nrdzv_conf;
  char *rdzv_conf_text; /* owned copy that rdzv_conf points into */
  fg_rdzv_conf rdzv;    /* rdzv_conf's values, defaults filled in */
  int standalone;
  const char *master_addr;
  int master_port;
  char store_host[256]; /* where the agent's store listens, derived from the above */
  int store_port;
  const char *store_token; /* every store client must present it; NULL: none */
  const char *local_addr;  /* the address this node advertises; NULL: the one it reaches
                              the store from */
  char run_id_buf[40];  /* the uuid --standalone makes up */

  /* the program */
  int max_restarts;
  double monitor_interval;
  const char *start_method;
  const char *role;
  int module, no_python, run_path;
  const char *python; /* NULL: PYTHON_EXEC, then python3 from PATH */
  enum fg_pmix_mode pmix;
  enum fg_numa_mode numa_binding;
  const char *program;
  char **program_args; /* argv after the program, not owned */
  int nprogram_args;

  /* output */
  const char *log_dir;
  fg_std_spec redirects, tee;
  int *ranks_filter; /* local ranks whose output reaches the console; NULL: all */
  int nranks_filter;
  const char *prefix_template;
  int no_prefix;
  const char *log_level;
  int event_log_console; /* --event_log_handler console: one JSON line per event */

  /* signals and teardown */
  int signals[FG_MAX_SIGNALS];
  int nsignals;
  double term_grace;

  /* hangs and the timeline */
  double hang_timeout; /* seconds; 0: no hang reports */
  int hang_kill;       /* --hang_action kill: a reported hang ends the attempt */
  int hang_stacks;     /* --hang_stacks: enum fg_hang_stacks (0 none, 1 culprit, 2 all) */
  const char *trace;   /* --trace FILE, or NULL */

  int show_help, show_version;
} fg_launch_opts;

/* Parses argv (and PET_* variables for options argv leaves unset). Returns 0, or -EINVAL
 * with one line in err. With --help or --version it returns 0 with show_help or
 * show_version set and nothing else checked. */
int fg_opts_parse(fg_launch_opts *o, int argc, char **argv, char *err, size_t errlen);
void fg_opts_free(fg_launch_opts *o);
/* The full, grouped --help text. */
void fg_opts_usage(int fd);

/* Value parsers, shared with the unit tests. */
int fg_parse_std_spec(const char *s, fg_std_spec *out, char *err, size_t errlen);
int fg_std_for(const fg_std_spec *s, int local_rank);
int fg_parse_nnodes(const char *s, int *min, int *max, char *err, size_t errlen);
int fg_parse_bool(const char *s, int *out);
/* These fill their fields of o from one option's value. */
int fg_parse_nproc(fg_launch_opts *o, const char *v, char *err, size_t errlen);
int fg_parse_local_addr(fg_launch_opts *o, const char *v, char *err, size_t errlen);
int fg_parse_numa_binding(fg_launch_opts *o, const char *v, char *err, size_t errlen);
int fg_parse_event_log_handler(fg_launch_opts *o, const char *v, char *err, size_t errlen);
/* --logs_specs names a Python entry point: always an error saying what to use instead. */
int fg_refuse_logs_specs(fg_launch_opts *o, const char *v, char *err, size_t errlen);
int fg_parse_rdzv_conf(fg_launch_opts *o, const char *v, char *err, size_t errlen);
int fg_parse_ranks_filter(fg_launch_opts *o, const char *v, char *err, size_t errlen);
int fg_parse_signals(fg_launch_opts *o, const char *v, char *err, size_t errlen);
/* Reads o->rdzv_conf into o->rdzv (rdzv_conf.c); unknown keys get a warning. */
int fg_read_rdzv_conf(fg_launch_opts *o, char *err, size_t errlen);
/* The checks that involve several options, and the store's address (options_check.c); run by
 * fg_opts_parse once every value is stored. 0 or -errno, with a message in err. */
int fg__opts_check(fg_launch_opts *o, char *err, size_t errlen);
/* "${rank}", "${local_rank}", "${role_name}" and "${group_rank}" (the node rank), and "$$";
 * anything else is an error. */
int fg_check_prefix_template(const char *tmpl, char *err, size_t errlen);
/* The template with its variables filled in; heap string or NULL when out of memory. */
char *fg_expand_prefix(const char *tmpl, int rank, int local_rank, const char *role);
char *fg_expand_node_prefix(const char *tmpl, int rank, int local_rank, const char *role,
                            int group_rank);

#endif

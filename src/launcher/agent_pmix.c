/* agent_pmix.c - the agent's side of its PMIx server (pmix.h): started with the agent,
 * a namespace per attempt, each rank's PMIx variables, and what a rank's MPI life says
 * about its exit: MPI_Abort ends the attempt with its code, and a rank that called
 * MPI_Init but exits without MPI_Finalize has failed (its peers would wait for it). */
#include <errno.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "launcher/agent_internal.h"
#include "launcher/pmix.h"

/* How long a rank that called MPI_Abort gets to exit with its code before the attempt is
 * stopped anyway. */
enum { ABORT_EXIT_MS = 1000 };

struct fg_agent_pmix {
  fg_pmix *server;
  uv_timer_t abort_timer;
  int aborting; /* local rank that called MPI_Abort, or -1 */
  /* Why the root cause failed, kept past the attempt (the summary comes after it). */
  const fg_worker *cause;
  char note[320];
  int status;
};

static void on_abort_timeout(uv_timer_t *t) {
  fg_agent *a = t->data;
  struct fg_agent_pmix *ap = a->pmix;
  if (a->phase != PHASE_RUNNING || ap->aborting < 0) return;
  fg_worker *w = &a->workers[ap->aborting];
  fg_warn("rank %d called MPI_Abort but is still running %d ms later; stopping the workers",
          w->rank, ABORT_EXIT_MS);
  fg_agent_pmix_failed(a, w); /* records the note */
  a->root_cause = w;
  fg_agent_begin_stop(a, SIGTERM);
}

static void on_rank_abort(void *data, int local_rank) {
  fg_agent *a = data;
  if (a->phase != PHASE_RUNNING || a->pmix->aborting >= 0) return;
  a->pmix->aborting = local_rank;
  uv_timer_start(&a->pmix->abort_timer, on_abort_timeout, ABORT_EXIT_MS, 0);
}

/* The server probes the machine with hwloc and shares the result with the ranks. Parts of
 * that probe serve no MPI rank and were most of fgrun's start-up: hwloc's plugins for GL
 * displays and OpenCL devices, and libxml2 for the export, which hwloc's built-in writer
 * makes just as well (5 of 16 ms at 1 rank here); and on one node the PCI scan (13 of 25 ms
 * before), as I/O locality is for choosing among NICs to other nodes. The variables are this
 * process's only while the server starts (workers never see them); the user's own win. */
static const struct {
  const char *name, *one_node, *many_nodes; /* NULL: leave it */
} probe_env[] = {
    {"HWLOC_COMPONENTS", "-pci,-linuxio", NULL},
    {"HWLOC_PLUGINS_BLACKLIST", "hwloc_gl,hwloc_opencl,hwloc_xml_libxml,hwloc_pci",
     "hwloc_gl,hwloc_opencl,hwloc_xml_libxml"},
};

int fg_agent_pmix_setup(fg_agent *a) {
  enum fg_pmix_mode mode = a->opts->pmix;
  if (mode == FG_PMIX_OFF) return 0;
  struct fg_agent_pmix *ap = calloc(1, sizeof *ap);
  if (!ap) {
    fg_error("out of memory");
    return 1;
  }
  ap->aborting = -1;
  char err[640];
  int one_node = a->opts->nnodes_max <= 1, set[FG_ARRAY_LEN(probe_env)] = {0};
  for (size_t i = 0; i < FG_ARRAY_LEN(probe_env); i++) {
    const char *v = one_node ? probe_env[i].one_node : probe_env[i].many_nodes;
    if (v && !getenv(probe_env[i].name)) set[i] = setenv(probe_env[i].name, v, 1) == 0;
  }
  int rc = fg_pmix_open(&ap->server, &a->loop, on_rank_abort, a, err, sizeof err);
  for (size_t i = 0; i < FG_ARRAY_LEN(probe_env); i++)
    if (set[i]) unsetenv(probe_env[i].name);
  if (rc != 0) {
    free(ap);
    if (mode == FG_PMIX_ON) {
      fg_error("error: --pmix on: %s", err);
      return 2;
    }
    fg_warn("no PMIx server (%s): MPI programs start as single-rank worlds; "
            "--pmix off says you know", err);
    return 0;
  }
  uv_timer_init(&a->loop, &ap->abort_timer);
  ap->abort_timer.data = a;
  a->pmix = ap;
  fg_debug("PMIx server up (%s)", fg_pmix_version(ap->server));
  return 0;
}

static void free_agent_pmix(uv_handle_t *h) {
  free((char *)h - offsetof(struct fg_agent_pmix, abort_timer));
}

void fg_agent_pmix_close(fg_agent *a) {
  struct fg_agent_pmix *ap = a->pmix;
  if (!ap) return;
  a->pmix = NULL;
  fg_pmix_close(ap->server);
  uv_close((uv_handle_t *)&ap->abort_timer, free_agent_pmix);
}

/* Names for the PMIx node map: host names, or host.<node rank> where two nodes share one
 * (network namespaces on one machine, containers). */
static void node_names(const fg_rdzv_round *r, char (*names)[FG_RDZV_NAME_MAX + 16]) {
  int shared = 0;
  for (int i = 0; i < r->nnodes; i++)
    for (int j = i + 1; j < r->nnodes; j++) shared |= !strcmp(r->nodes[i].host, r->nodes[j].host);
  for (int i = 0; i < r->nnodes; i++)
    snprintf(names[i], sizeof names[i], shared ? "%s.%d" : "%s", r->nodes[i].host, i);
}

void fg_agent_pmix_begin(fg_agent *a) {
  struct fg_agent_pmix *ap = a->pmix;
  if (!ap) return;
  uv_timer_stop(&ap->abort_timer);
  ap->aborting = -1;
  ap->cause = NULL;
  char id[FG_RDZV_NAME_MAX + 32], prefix[64], err[640], host[FG_RDZV_NAME_MAX] = "localhost";
  fg_pmix_job job = {.attempt = a->attempt, .id = id};
  fg_pmix_node one;
  char (*names)[FG_RDZV_NAME_MAX + 16] = NULL;
  fg_pmix_node *nodes = NULL;
  const fg_rdzv_round *r = a->rdzv ? fg_rdzv_loop_round(a->rdzv) : NULL;
  if (!r || r->nnodes <= 1) {
    gethostname(host, sizeof host - 1);
    snprintf(id, sizeof id, "%s.%d", host, (int)getpid());
    one = (fg_pmix_node){.name = host, .nproc = a->opts->nproc};
    job.nnodes = 1;
    job.nodes = &one;
  } else {
    /* Every node must name the attempt alike: after node 0's agent, alive all round. */
    snprintf(id, sizeof id, "%s.%d", r->nodes[0].host, r->nodes[0].pid);
    names = calloc((size_t)r->nnodes, sizeof *names);
    nodes = calloc((size_t)r->nnodes, sizeof *nodes);
    if (names && nodes) {
      node_names(r, names);
      for (int i = 0; i < r->nnodes; i++) nodes[i] = (fg_pmix_node){names[i], r->nodes[i].nproc};
    }
    snprintf(prefix, sizeof prefix, "/worker/attempt_%d/", a->attempt);
    job.nnodes = r->nnodes;
    job.node = r->node_rank;
    job.nodes = nodes;
    job.store_host = a->opts->store_host;
    job.store_port = a->env.master_port;
    job.store_prefix = prefix;
  }
  int rc = job.nodes ? fg_pmix_begin(ap->server, &job, err, sizeof err)
                     : fg__fail(err, sizeof err, -ENOMEM, "out of memory");
  if (rc != 0)
    fg_warn("attempt %d: no PMIx namespace (%s): MPI programs start as single-rank worlds",
            a->attempt, err);
  free(names);
  free(nodes);
}

int fg_agent_pmix_env(fg_agent *a, int local_rank, char ***env) {
  if (!a->pmix || !*env) return 0;
  char **vars = fg_pmix_env(a->pmix->server, local_rank);
  if (!vars) return 0; /* no namespace this attempt: said so at its start */
  char **both = fg_env_overlay(*env, vars);
  fg_pmix_env_free(vars);
  free(*env);
  *env = both;
  return both ? 0 : -ENOMEM;
}

void fg_agent_pmix_end(fg_agent *a) {
  if (!a->pmix) return;
  uv_timer_stop(&a->pmix->abort_timer);
  fg_pmix_end(a->pmix->server);
}

int fg_agent_pmix_failed(fg_agent *a, const fg_worker *w) {
  struct fg_agent_pmix *ap = a->pmix;
  if (!ap || a->phase != PHASE_RUNNING) return 0; /* once stopping, exits are fgrun's doing */
  const fg_pmix_rank *pr = fg_pmix_rank_info(ap->server, w->local_rank);
  if (pr->state == FG_PMIX_ABORTED) {
    ap->cause = w;
    ap->status = pr->abort_status;
    snprintf(ap->note, sizeof ap->note, "called MPI_Abort with error code %d%s%s%s",
             pr->abort_status, pr->abort_msg[0] && strcmp(pr->abort_msg, "N/A") ? " (\"" : "",
             pr->abort_msg[0] && strcmp(pr->abort_msg, "N/A") ? pr->abort_msg : "",
             pr->abort_msg[0] && strcmp(pr->abort_msg, "N/A") ? "\")" : "");
    return 1;
  }
  if (pr->state == FG_PMIX_CONNECTED && w->state == FG_WORKER_EXITED && !w->term_signal &&
      w->exit_code == 0) {
    ap->cause = w;
    ap->status = 1;
    snprintf(ap->note, sizeof ap->note,
             "exited with code 0 without calling MPI_Finalize (it had called MPI_Init)");
    return 1;
  }
  return 0;
}

const char *fg_agent_pmix_note(const fg_agent *a, const fg_worker *w, int *status) {
  if (!a->pmix || !w || a->pmix->cause != w) return NULL;
  *status = a->pmix->status;
  return a->pmix->note;
}

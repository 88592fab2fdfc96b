/* pmix_env.c - what a rank's environment gets from fgrun's PMIx server: the variables of
 * PMIx_server_setup_fork, mpirun's OMPI_COMM_WORLD_* and Open MPI settings that direct
 * launch needs (each unless the user set it). */
#include <glob.h>
#include <stdlib.h>

#include "common/util.h"
#include "launcher/pmix_internal.h"

enum when { ALWAYS, OVERSUBSCRIBED, NO_FABRIC };

/* Variables a rank needs besides PMIx_server_setup_fork's, unless the user set them. */
static const struct {
  const char *name, *value; /* value NULL: the attempt's session directory */
  enum when when;
} rank_defaults[] = {
    /* Open MPI 4.1 (orte's schizo) declares a process that neither mpirun nor Slurm started
     * a singleton; without that component it asks the PMIx server, as direct launch needs. */
    {"OMPI_MCA_schizo", "^orte", ALWAYS},
    /* What mpirun sets on an oversubscribed node: ranks yield while they wait, instead of
     * spinning on the CPU the rank they wait for needs. */
    {"OMPI_MCA_mpi_oversubscribe", "1", OVERSUBSCRIBED},
    /* The cm PML's transports need a device: PSM a TrueScale one, PSM2 an Omni-Path one, OFI
     * (which leaves out its tcp, udp and shm providers) an RDMA one. Where the node has none,
     * each rank's MPI_Init still opens them, and PSM and PSM2 wait about 100 ms each for the
     * hardware before they give up: 200 ms of the 330 a rank's MPI_Init takes here. Not set
     * when the user chose a PML (OMPI_MCA_pml) or the MTLs. */
    {"OMPI_MCA_mtl", "^psm,psm2,ofi", NO_FABRIC},
    /* Shared-memory segments (named by host, job and local rank) in the agent's directory,
     * not /dev/shm itself: removed with it when ranks are killed, and two "nodes" on one
     * machine (containers, network namespaces) cannot meet in them. */
    {"OMPI_MCA_btl_vader_backing_directory", NULL, ALWAYS}, /* Open MPI 4.1 */
    {"OMPI_MCA_btl_sm_backing_directory", NULL, ALWAYS},    /* Open MPI 5 */
};

static int exists(const char *pattern) {
  glob_t g;
  int found = glob(pattern, GLOB_NOSORT, NULL, &g) == 0 && g.gl_pathc > 0;
  globfree(&g);
  return found;
}

/* A device one of the cm PML's MTLs could use: RDMA (verbs, EFA: /sys/class/infiniband),
 * Omni-Path (hfi1), TrueScale (ipath), Slingshot (cxi). */
int fg__pmix_node_has_fabric(void) {
  static const char *const devices[] = {"/sys/class/infiniband/*", "/dev/hfi1*", "/dev/ipath*",
                                        "/sys/class/cxi/*"};
  for (size_t i = 0; i < FG_ARRAY_LEN(devices); i++)
    if (exists(devices[i])) return 1;
  return 0;
}

static int applies(fg_pmix *p, size_t i) {
  if (getenv(rank_defaults[i].name)) return 0;
  switch (rank_defaults[i].when) {
    case ALWAYS: return 1;
    case OVERSUBSCRIBED: return p->oversubscribed;
    case NO_FABRIC: return !getenv("OMPI_MCA_pml") && !p->fabric;
  }
  return 0;
}

char **fg_pmix_env(fg_pmix *p, int local_rank) {
  if (!p->active || local_rank < 0 || local_rank >= p->nproc) return NULL;
  pmix_proc_t proc;
  PMIX_LOAD_PROCID(&proc, p->nspace, (pmix_rank_t)(p->rank_base + local_rank));
  char **env = calloc(1, sizeof *env); /* libpmix appends with its own argv helpers */
  if (!env || !fg__pmix_ok(p->api.PMIx_server_setup_fork(&proc, &env))) {
    fg_pmix_env_free(env);
    return NULL;
  }
  /* What mpirun tells each rank, for programs and scripts that read it (picking a GPU by
   * OMPI_COMM_WORLD_LOCAL_RANK, say); libfg and torch read RANK first. */
  const struct {
    const char *name;
    int value;
  } ompi_vars[] = {
      {"OMPI_COMM_WORLD_RANK", p->rank_base + local_rank}, {"OMPI_COMM_WORLD_SIZE", p->world},
      {"OMPI_COMM_WORLD_LOCAL_RANK", local_rank},          {"OMPI_COMM_WORLD_LOCAL_SIZE", p->nproc},
      {"OMPI_COMM_WORLD_NODE_RANK", local_rank},           {"OMPI_UNIVERSE_SIZE", p->world},
  };
  size_t n = 0;
  while (env[n]) n++;
  char **grown = realloc(env, (n + FG_ARRAY_LEN(rank_defaults) + FG_ARRAY_LEN(ompi_vars) + 1) *
                                  sizeof *env);
  if (!grown) {
    fg_pmix_env_free(env);
    return NULL;
  }
  env = grown;
  for (size_t i = 0; i < FG_ARRAY_LEN(rank_defaults); i++)
    if (applies(p, i) &&
        (env[n] = fg__asprintf("%s=%s", rank_defaults[i].name,
                              rank_defaults[i].value ? rank_defaults[i].value : p->nsdir)))
      n++;
  for (size_t i = 0; i < FG_ARRAY_LEN(ompi_vars); i++)
    if ((env[n] = fg__asprintf("%s=%d", ompi_vars[i].name, ompi_vars[i].value))) n++;
  env[n] = NULL;
  return env;
}

void fg_pmix_env_free(char **env) {
  if (!env) return;
  for (char **e = env; *e; e++) free(*e);
  free(env);
}

/* pmix.c - the agent's PMIx server: its callbacks, the events they queue for the loop,
 * and each attempt's namespace (what Open MPI's direct launch reads: job size, node and
 * proc maps, local peers and ranks, node ids, session directories). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/buf.h"
#include "common/log.h"
#include "common/util.h"
#include "launcher/pmix_internal.h"
#include "launcher/rundir.h"

typedef struct fg_pmix_event {
  enum { EV_CONNECTED, EV_FINALIZED, EV_ABORTED, EV_FENCE } kind;
  char nspace[PMIX_MAX_NSLEN + 1];
  pmix_rank_t rank;
  int status;
  char msg[256];
  pmix_proc_t *procs; /* EV_FENCE: copies of what libpmix passed */
  size_t nprocs;
  char *data;
  size_t ndata;
  pmix_modex_cbfunc_t cbfunc;
  void *cbdata;
  struct fg_pmix_event *next;
} fg_pmix_event;

/* libpmix's callbacks carry no pointer of ours: there is one server per process. */
static fg_pmix *the_server;

/* --- libpmix's thread: queue, then wake the loop ---------------------------------------- */

static fg_pmix_event *new_event(int kind, const pmix_proc_t *proc) {
  fg_pmix_event *e = calloc(1, sizeof *e);
  if (!e) return NULL;
  e->kind = kind;
  if (proc) {
    memcpy(e->nspace, proc->nspace, sizeof e->nspace - 1);
    e->rank = proc->rank;
  }
  return e;
}

static void post(fg_pmix_event *e) {
  fg_pmix *p = the_server;
  pthread_mutex_lock(&p->mu);
  *p->tail = e;
  p->tail = &e->next;
  pthread_mutex_unlock(&p->mu);
  uv_async_send(&p->wakeup);
}

static pmix_status_t post_state(int kind, const pmix_proc_t *proc, pmix_op_cbfunc_t cbfunc,
                                void *cbdata) {
  fg_pmix_event *e = new_event(kind, proc);
  if (!e) return PMIX_ERR_NOMEM;
  post(e);
  /* Queued before the client hears back, so before it can exit: the agent sees the event
   * no later than the exit (fg_pmix_rank_info drains the queue). */
  if (cbfunc) cbfunc(PMIX_SUCCESS, cbdata);
  return PMIX_SUCCESS;
}

static pmix_status_t on_connected(const pmix_proc_t *proc, void *obj, pmix_op_cbfunc_t cbfunc,
                                  void *cbdata) {
  (void)obj;
  return post_state(EV_CONNECTED, proc, cbfunc, cbdata);
}

static pmix_status_t on_finalized(const pmix_proc_t *proc, void *obj, pmix_op_cbfunc_t cbfunc,
                                  void *cbdata) {
  (void)obj;
  return post_state(EV_FINALIZED, proc, cbfunc, cbdata);
}

static pmix_status_t on_abort(const pmix_proc_t *proc, void *obj, int status, const char msg[],
                              pmix_proc_t procs[], size_t nprocs, pmix_op_cbfunc_t cbfunc,
                              void *cbdata) {
  (void)obj, (void)procs, (void)nprocs; /* whichever procs it names, the job ends */
  fg_pmix_event *e = new_event(EV_ABORTED, proc);
  if (!e) return PMIX_ERR_NOMEM;
  e->status = status;
  snprintf(e->msg, sizeof e->msg, "%s", msg ? msg : "");
  post(e);
  if (cbfunc) cbfunc(PMIX_SUCCESS, cbdata); /* the rank exits with its code by itself */
  return PMIX_SUCCESS;
}

static pmix_status_t on_fence(const pmix_proc_t procs[], size_t nprocs, const pmix_info_t info[],
                              size_t ninfo, char *data, size_t ndata, pmix_modex_cbfunc_t cbfunc,
                              void *cbdata) {
  (void)info, (void)ninfo; /* collect-data or not, the data given is the data to share */
  fg_pmix_event *e = new_event(EV_FENCE, nprocs ? &procs[0] : NULL);
  if (!e) return PMIX_ERR_NOMEM;
  e->procs = nprocs ? malloc(nprocs * sizeof *procs) : NULL;
  e->data = ndata ? malloc(ndata) : NULL;
  if ((nprocs && !e->procs) || (ndata && !e->data)) {
    free(e->procs);
    free(e->data);
    free(e);
    return PMIX_ERR_NOMEM;
  }
  if (nprocs) memcpy(e->procs, procs, nprocs * sizeof *procs);
  if (ndata) memcpy(e->data, data, ndata);
  e->nprocs = nprocs;
  e->ndata = ndata;
  e->cbfunc = cbfunc;
  e->cbdata = cbdata;
  post(e);
  return PMIX_SUCCESS;
}

/* What fgrun does not serve: the rank gets PMIX_ERR_NOT_SUPPORTED (its MPI call fails with
 * an error) and the console one line saying who asked for what. */
static pmix_status_t refuse(const pmix_proc_t *proc, const char *what) {
  fg_warn("rank %u asked for %s, which fgrun's PMIx server does not provide; the call "
          "fails with PMIX_ERR_NOT_SUPPORTED", proc ? proc->rank : 0, what);
  return PMIX_ERR_NOT_SUPPORTED;
}

static pmix_status_t on_dmodex(const pmix_proc_t *proc, const pmix_info_t info[], size_t ninfo,
                               pmix_modex_cbfunc_t cbfunc, void *cbdata) {
  (void)proc, (void)info, (void)ninfo, (void)cbfunc, (void)cbdata;
  return PMIX_ERR_NOT_SUPPORTED; /* every fence collects all data: nothing to ask for */
}

static pmix_status_t on_publish(const pmix_proc_t *proc, const pmix_info_t info[], size_t ninfo,
                                pmix_op_cbfunc_t cbfunc, void *cbdata) {
  (void)info, (void)ninfo, (void)cbfunc, (void)cbdata;
  return refuse(proc, "PMIx_Publish (MPI_Publish_name)");
}

static pmix_status_t on_lookup(const pmix_proc_t *proc, char **keys, const pmix_info_t info[],
                               size_t ninfo, pmix_lookup_cbfunc_t cbfunc, void *cbdata) {
  (void)keys, (void)info, (void)ninfo, (void)cbfunc, (void)cbdata;
  return refuse(proc, "PMIx_Lookup (MPI_Lookup_name)");
}

static pmix_status_t on_unpublish(const pmix_proc_t *proc, char **keys, const pmix_info_t info[],
                                  size_t ninfo, pmix_op_cbfunc_t cbfunc, void *cbdata) {
  (void)keys, (void)info, (void)ninfo, (void)cbfunc, (void)cbdata;
  return refuse(proc, "PMIx_Unpublish (MPI_Unpublish_name)");
}

static pmix_status_t on_spawn(const pmix_proc_t *proc, const pmix_info_t job_info[], size_t ninfo,
                              const pmix_app_t apps[], size_t napps, pmix_spawn_cbfunc_t cbfunc,
                              void *cbdata) {
  (void)job_info, (void)ninfo, (void)apps, (void)napps, (void)cbfunc, (void)cbdata;
  return refuse(proc, "PMIx_Spawn (MPI_Comm_spawn)");
}

static pmix_status_t on_connect(const pmix_proc_t procs[], size_t nprocs, const pmix_info_t info[],
                                size_t ninfo, pmix_op_cbfunc_t cbfunc, void *cbdata) {
  (void)info, (void)ninfo, (void)cbfunc, (void)cbdata;
  return refuse(nprocs ? &procs[0] : NULL, "PMIx_Connect (MPI_Comm_connect/accept)");
}

static pmix_status_t on_disconnect(const pmix_proc_t procs[], size_t nprocs,
                                   const pmix_info_t info[], size_t ninfo,
                                   pmix_op_cbfunc_t cbfunc, void *cbdata) {
  (void)info, (void)ninfo, (void)cbfunc, (void)cbdata;
  return refuse(nprocs ? &procs[0] : NULL, "PMIx_Disconnect (MPI_Comm_disconnect)");
}

static pmix_server_module_t server_module = {
    .client_connected = on_connected,
    .client_finalized = on_finalized,
    .abort = on_abort,
    .fence_nb = on_fence,
    .direct_modex = on_dmodex,
    .publish = on_publish,
    .lookup = on_lookup,
    .unpublish = on_unpublish,
    .spawn = on_spawn,
    .connect = on_connect,
    .disconnect = on_disconnect,
};

/* --- the loop: take the events in ------------------------------------------------------- */

static int local_rank_of(const fg_pmix *p, const char *nspace, pmix_rank_t rank) {
  if (!p->active || strncmp(nspace, p->nspace, PMIX_MAX_NSLEN) != 0) return -1;
  long l = (long)rank - p->rank_base;
  return l >= 0 && l < p->nproc ? (int)l : -1;
}

static void handle(fg_pmix *p, fg_pmix_event *e) {
  if (e->kind == EV_FENCE) {
    if (p->active && strncmp(e->nspace, p->nspace, PMIX_MAX_NSLEN) == 0) {
      fg_pmix_fence_start(p, e->procs, e->nprocs, e->data, e->ndata, e->cbfunc, e->cbdata);
      e->data = NULL; /* the fence owns it now */
    } else {
      e->cbfunc(PMIX_ERR_INVALID_NAMESPACE, NULL, 0, e->cbdata, NULL, NULL);
    }
    return;
  }
  int l = local_rank_of(p, e->nspace, e->rank);
  if (l < 0) return; /* a rank of an attempt that is over */
  fg_pmix_rank *r = &p->ranks[l];
  switch (e->kind) {
    case EV_CONNECTED:
      if (r->state == FG_PMIX_NONE) r->state = FG_PMIX_CONNECTED;
      break;
    case EV_FINALIZED:
      if (r->state != FG_PMIX_ABORTED) r->state = FG_PMIX_FINALIZED;
      break;
    case EV_ABORTED:
      r->state = FG_PMIX_ABORTED;
      r->abort_status = e->status;
      snprintf(r->abort_msg, sizeof r->abort_msg, "%s", e->msg);
      if (p->on_abort) p->on_abort(p->data, l);
      break;
    default:
      break;
  }
}

/* discard: libpmix is finalized, so nothing may be answered. */
static void drain(fg_pmix *p, int discard) {
  pthread_mutex_lock(&p->mu);
  fg_pmix_event *e = p->head;
  p->head = NULL;
  p->tail = &p->head;
  pthread_mutex_unlock(&p->mu);
  while (e) {
    fg_pmix_event *next = e->next;
    if (!discard) handle(p, e);
    free(e->procs);
    free(e->data);
    free(e);
    e = next;
  }
}

static void on_wakeup(uv_async_t *h) { drain(h->data, 0); }

/* --- the server ------------------------------------------------------------------------- */

static const char *pmix_error(const fg_pmix *p, pmix_status_t rc) {
  return p->api.PMIx_Error_string ? p->api.PMIx_Error_string(rc) : "PMIx error";
}

#define ok fg__pmix_ok

/* The server's directory: in memory (/dev/shm) where there is one, since the ranks' shared
 * memory segments go there too; else $TMPDIR or /tmp. */
static int make_dir(fg_pmix *p, char *err, size_t errlen) {
  const char *tmp = getenv("TMPDIR");
  const char *tries[] = {"/dev/shm", tmp && *tmp ? tmp : "/tmp"};
  int e = 0;
  for (size_t i = 0; i < FG_ARRAY_LEN(tries); i++) {
    snprintf(p->dir, sizeof p->dir, "%s/fgrun-pmix.%d.XXXXXX", tries[i], (int)getpid());
    if (mkdtemp(p->dir)) return 0;
    e = errno;
  }
  p->dir[0] = '\0';
  return fg__fail(err, errlen, -e, "cannot create a directory for the PMIx server in /dev/shm "
                 "or %s: %s", tries[1], strerror(e));
}

static int start_server(fg_pmix *p, char *err, size_t errlen) {
  int rc = make_dir(p, err, errlen);
  if (rc != 0) return rc;
  bool share = true; /* the ranks map the server's topology instead of each probing the PCI bus */
  void *list = p->api.PMIx_Info_list_start();
  p->api.PMIx_Info_list_add(list, PMIX_SERVER_TMPDIR, p->dir, PMIX_STRING);
  p->api.PMIx_Info_list_add(list, PMIX_SYSTEM_TMPDIR, p->dir, PMIX_STRING);
  p->api.PMIx_Info_list_add(list, PMIX_SERVER_SHARE_TOPOLOGY, &share, PMIX_BOOL);
  pmix_data_array_t info = {0};
  pmix_status_t prc = p->api.PMIx_Info_list_convert(list, &info);
  if (ok(prc)) prc = p->api.PMIx_server_init(&server_module, info.array, info.size);
  p->api.PMIx_Data_array_destruct(&info);
  p->api.PMIx_Info_list_release(list);
  if (!ok(prc)) return fg__fail(err, errlen, -EIO, "PMIx_server_init: %s", pmix_error(p, prc));
  p->server_up = 1;
  p->fabric = fg__pmix_node_has_fabric();
  return 0;
}

int fg_pmix_open(fg_pmix **out, uv_loop_t *loop, fg_pmix_abort_cb on_abort, void *data,
                 char *err, size_t errlen) {
  *out = NULL;
  if (the_server) return fg__fail(err, errlen, -EBUSY, "a PMIx server is running already");
  fg_pmix *p = calloc(1, sizeof *p);
  if (!p) return fg__fail(err, errlen, -ENOMEM, "out of memory");
  int rc = fg_pmix_api_load(&p->api, err, errlen);
  if (rc != 0) {
    free(p);
    return rc;
  }
  p->loop = loop;
  p->on_abort = on_abort;
  p->data = data;
  p->tail = &p->head;
  pthread_mutex_init(&p->mu, NULL);
  uv_async_init(loop, &p->wakeup, on_wakeup);
  p->wakeup.data = p;
  p->wakeup_open = 1;
  uv_unref((uv_handle_t *)&p->wakeup); /* the attempt's workers keep the loop alive */
  the_server = p;
  if ((rc = start_server(p, err, errlen)) != 0) {
    fg_pmix_close(p);
    return rc;
  }
  *out = p;
  return 0;
}

const char *fg_pmix_version(const fg_pmix *p) { return p->api.PMIx_Get_version(); }

static void free_wakeup(uv_handle_t *h) {
  fg_pmix *p = h->data;
  pthread_mutex_destroy(&p->mu);
  free(p);
}

void fg_pmix_close(fg_pmix *p) {
  if (!p) return;
  fg_pmix_end(p);
  if (p->server_up) p->api.PMIx_server_finalize();
  p->server_up = 0;
  drain(p, 1); /* whatever libpmix queued last */
  if (p->dir[0]) fg_remove_tree(p->dir);
  fg_pmix_api_unload(&p->api);
  the_server = NULL;
  if (p->wakeup_open)
    uv_close((uv_handle_t *)&p->wakeup, free_wakeup);
  else
    free_wakeup((uv_handle_t *)&p->wakeup);
}

/* --- an attempt ------------------------------------------------------------------------- */

static void add_u32(fg_pmix *p, void *list, const char *key, uint32_t v) {
  p->api.PMIx_Info_list_add(list, key, &v, PMIX_UINT32);
}

static void add_u16(fg_pmix *p, void *list, const char *key, int v) {
  uint16_t u = (uint16_t)v;
  p->api.PMIx_Info_list_add(list, key, &u, PMIX_UINT16);
}

static void add_rank(fg_pmix *p, void *list, const char *key, int v) {
  pmix_rank_t r = (pmix_rank_t)v;
  p->api.PMIx_Info_list_add(list, key, &r, PMIX_PROC_RANK);
}

static void add_bool(fg_pmix *p, void *list, const char *key, bool v) {
  p->api.PMIx_Info_list_add(list, key, &v, PMIX_BOOL);
}

int fg_pmix_node_of(const fg_pmix *p, int rank) {
  int n = 0;
  while (n + 1 < p->nnodes && rank >= p->node_base[n + 1]) n++;
  return n;
}

/* The node map and proc map as libpmix's regular expressions ("pmix:..."). */
static int add_maps(fg_pmix *p, void *list, const fg_pmix_job *job, char *err, size_t errlen) {
  fg_buf names, ppn;
  fg__buf_init(&names);
  fg__buf_init(&ppn);
  for (int n = 0; n < job->nnodes; n++) {
    fg__buf_printf(&names, "%s%s", n ? "," : "", job->nodes[n].name);
    for (int r = p->node_base[n]; r < p->node_base[n + 1]; r++)
      fg__buf_printf(&ppn, "%s%d", r > p->node_base[n] ? "," : n ? ";" : "", r);
  }
  fg__buf_put_u8(&names, '\0');
  fg__buf_put_u8(&ppn, '\0');
  char *node_map = NULL, *proc_map = NULL;
  pmix_status_t rc = PMIX_ERR_NOMEM;
  if (!names.failed && !ppn.failed) rc = p->api.PMIx_generate_regex((char *)names.data, &node_map);
  if (ok(rc)) rc = p->api.PMIx_generate_ppn((char *)ppn.data, &proc_map);
  if (ok(rc)) {
    p->api.PMIx_Info_list_add(list, PMIX_NODE_MAP, node_map, PMIX_REGEX);
    p->api.PMIx_Info_list_add(list, PMIX_PROC_MAP, proc_map, PMIX_REGEX);
  }
  free(node_map);
  free(proc_map);
  fg__buf_free(&names);
  fg__buf_free(&ppn);
  return ok(rc) ? 0 : fg__fail(err, errlen, -EIO, "PMIx_generate_regex: %s", pmix_error(p, rc));
}

/* One rank's PMIX_PROC_DATA: who it is, where it runs; for this node's, its local ranks
 * and session directory. */
static void add_proc(fg_pmix *p, void *list, const fg_pmix_job *job, int rank) {
  void *proc = p->api.PMIx_Info_list_start();
  int node = fg_pmix_node_of(p, rank);
  add_rank(p, proc, PMIX_RANK, rank);
  add_u32(p, proc, PMIX_APPNUM, 0);
  add_rank(p, proc, PMIX_APPLDR, 0);
  add_rank(p, proc, PMIX_GLOBAL_RANK, rank);
  add_rank(p, proc, PMIX_APP_RANK, rank);
  add_u32(p, proc, PMIX_NODEID, (uint32_t)node);
  p->api.PMIx_Info_list_add(proc, PMIX_HOSTNAME, job->nodes[node].name, PMIX_STRING);
  if (node == p->node) {
    int local = rank - p->rank_base;
    char dir[400];
    snprintf(dir, sizeof dir, "%s/%d", p->nsdir, local);
    add_u16(p, proc, PMIX_LOCAL_RANK, local);
    add_u16(p, proc, PMIX_NODE_RANK, local);
    p->api.PMIx_Info_list_add(proc, PMIX_PROCDIR, dir, PMIX_STRING);
  }
  pmix_data_array_t arr = {0};
  if (ok(p->api.PMIx_Info_list_convert(proc, &arr)))
    p->api.PMIx_Info_list_add(list, PMIX_PROC_DATA, &arr, PMIX_DATA_ARRAY);
  p->api.PMIx_Data_array_destruct(&arr);
  p->api.PMIx_Info_list_release(proc);
}

static int register_nspace(fg_pmix *p, const fg_pmix_job *job, char *err, size_t errlen) {
  void *list = p->api.PMIx_Info_list_start();
  uint32_t world = (uint32_t)p->world;
  p->api.PMIx_Info_list_add(list, PMIX_JOBID, p->nspace, PMIX_STRING);
  add_bool(p, list, PMIX_SPAWNED, false);
  add_u32(p, list, PMIX_UNIV_SIZE, world);
  add_u32(p, list, PMIX_JOB_SIZE, world);
  add_u32(p, list, PMIX_APP_SIZE, world);
  add_u32(p, list, PMIX_MAX_PROCS, world);
  add_u32(p, list, PMIX_JOB_NUM_APPS, 1);
  add_u32(p, list, PMIX_NUM_NODES, (uint32_t)p->nnodes);
  add_u32(p, list, PMIX_NODEID, (uint32_t)p->node);
  add_u32(p, list, PMIX_LOCAL_SIZE, (uint32_t)p->nproc);
  add_u32(p, list, PMIX_NODE_SIZE, (uint32_t)p->nproc);
  add_rank(p, list, PMIX_LOCALLDR, p->rank_base);
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  p->oversubscribed = cpus > 0 && p->nproc > cpus;
  add_bool(p, list, PMIX_NODE_OVERSUBSCRIBED, p->oversubscribed);
  p->api.PMIx_Info_list_add(list, PMIX_TMPDIR, p->dir, PMIX_STRING);
  p->api.PMIx_Info_list_add(list, PMIX_NSDIR, p->nsdir, PMIX_STRING);
  add_bool(p, list, PMIX_TDIR_RMCLEAN, true); /* fgrun removes them: ranks may be killed */
  fg_buf peers;
  fg__buf_init(&peers);
  for (int l = 0; l < p->nproc; l++) fg__buf_printf(&peers, "%s%d", l ? "," : "", p->rank_base + l);
  fg__buf_put_u8(&peers, '\0');
  if (!peers.failed) p->api.PMIx_Info_list_add(list, PMIX_LOCAL_PEERS, peers.data, PMIX_STRING);
  fg__buf_free(&peers);
  int rc = add_maps(p, list, job, err, errlen);
  for (int r = 0; rc == 0 && r < p->world; r++) add_proc(p, list, job, r);

  pmix_data_array_t info = {0};
  pmix_status_t prc = PMIX_ERROR;
  if (rc == 0) {
    prc = p->api.PMIx_Info_list_convert(list, &info);
    if (ok(prc))
      prc = p->api.PMIx_server_register_nspace(p->nspace, p->nproc, info.array, info.size, NULL,
                                               NULL);
    if (!ok(prc))
      rc = fg__fail(err, errlen, -EIO, "PMIx_server_register_nspace %s: %s", p->nspace,
                   pmix_error(p, prc));
  }
  p->api.PMIx_Data_array_destruct(&info);
  p->api.PMIx_Info_list_release(list);
  if (rc != 0) return rc;
  p->active = 1; /* from here on, fg_pmix_end deregisters it */
  prc = p->api.PMIx_server_setup_local_support(p->nspace, NULL, 0, NULL, NULL);
  if (!ok(prc) && prc != PMIX_ERR_NOT_SUPPORTED)
    return fg__fail(err, errlen, -EIO, "PMIx_server_setup_local_support: %s", pmix_error(p, prc));
  for (int l = 0; l < p->nproc; l++) {
    pmix_proc_t proc;
    PMIX_LOAD_PROCID(&proc, p->nspace, (pmix_rank_t)(p->rank_base + l));
    prc = p->api.PMIx_server_register_client(&proc, geteuid(), getegid(), NULL, NULL, NULL);
    if (!ok(prc))
      return fg__fail(err, errlen, -EIO, "PMIx_server_register_client rank %d: %s",
                     p->rank_base + l, pmix_error(p, prc));
  }
  return 0;
}

static int copy_job(fg_pmix *p, const fg_pmix_job *job, char *err, size_t errlen) {
  if (job->nnodes < 1 || job->node < 0 || job->node >= job->nnodes)
    return fg__fail(err, errlen, -EINVAL, "bad node %d of %d", job->node, job->nnodes);
  p->nnodes = job->nnodes;
  p->node = job->node;
  p->node_base = calloc((size_t)job->nnodes + 1, sizeof *p->node_base);
  if (!p->node_base) return fg__fail(err, errlen, -ENOMEM, "out of memory");
  for (int n = 0; n < job->nnodes; n++) p->node_base[n + 1] = p->node_base[n] + job->nodes[n].nproc;
  p->world = p->node_base[job->nnodes];
  p->rank_base = p->node_base[job->node];
  p->nproc = job->nodes[job->node].nproc;
  p->ranks = calloc((size_t)p->nproc, sizeof *p->ranks);
  p->store_host = job->store_host ? strdup(job->store_host) : NULL;
  p->store_prefix = job->store_prefix ? strdup(job->store_prefix) : NULL;
  p->store_port = job->store_port;
  if (!p->ranks || (job->store_host && !p->store_host) || (job->store_prefix && !p->store_prefix))
    return fg__fail(err, errlen, -ENOMEM, "out of memory");
  snprintf(p->nspace, sizeof p->nspace, "fgrun.%.200s.%d", job->id, job->attempt);
  snprintf(p->nsdir, sizeof p->nsdir, "%s/attempt_%d", p->dir, job->attempt);
  return 0;
}

int fg_pmix_begin(fg_pmix *p, const fg_pmix_job *job, char *err, size_t errlen) {
  fg_pmix_end(p);
  int rc = copy_job(p, job, err, errlen);
  if (rc == 0 && mkdir(p->nsdir, 0700) != 0 && errno != EEXIST)
    rc = fg__fail(err, errlen, -errno, "cannot create %s: %s", p->nsdir, strerror(errno));
  if (rc == 0) rc = register_nspace(p, job, err, errlen);
  if (rc != 0) fg_pmix_end(p);
  return rc;
}

const fg_pmix_rank *fg_pmix_rank_info(fg_pmix *p, int local_rank) {
  static const fg_pmix_rank none = {.state = FG_PMIX_NONE};
  drain(p, 0);
  return p->active && local_rank >= 0 && local_rank < p->nproc ? &p->ranks[local_rank] : &none;
}

void fg_pmix_end(fg_pmix *p) {
  if (p->active) {
    drain(p, 0);
    fg_pmix_fence_cancel_all(p);
    p->api.PMIx_server_deregister_nspace(p->nspace, NULL, NULL);
    fg_remove_tree(p->nsdir);
  }
  p->active = 0;
  free(p->node_base);
  free(p->ranks);
  free(p->store_host);
  free(p->store_prefix);
  free(p->seqs);
  p->node_base = NULL;
  p->ranks = NULL;
  p->store_host = p->store_prefix = NULL;
  p->seqs = NULL;
  p->nseqs = 0;
}

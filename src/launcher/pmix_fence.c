/* pmix_fence.c - a PMIx fence across nodes, through the job's store.
 *
 * libpmix hands the agent its local ranks' data once they have all entered the fence. Each
 * agent of the nodes involved writes it under the fence's key, waits for the others', and
 * gives libpmix their concatenation (each server's part is self-describing): one round per
 * fence, a write and a multi-get per node. Keys sit under the attempt's prefix, so the
 * store's host erases them with the attempt's other keys:
 *
 *   /worker/attempt_<n>/fgrun.pmix/fence.<members>.<seq>/<node>
 *
 * <members> names the set of nodes (every fence of a set gets the next <seq>, the same on
 * every node, since their ranks enter fences in the same order). The store calls block, so
 * they run on libuv's thread pool; the wait is cut into slices so an attempt that ends (a
 * rank died: the fence will never complete) releases the thread within one. Only the loop
 * thread answers libpmix. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "fg/store.h"
#include "launcher/pmix_internal.h"

enum { WAIT_SLICE_MS = 200, CONNECT_TIMEOUT_MS = 30000 };

struct fg_pmix_fence {
  uv_work_t work;
  fg_pmix *p;        /* NULL once the attempt ended: then nobody waits for the answer */
  atomic_int cancelled;
  char *host;
  int port;
  char base[384];    /* the fence's key, without /<node> */
  int me;            /* this node */
  int *members;      /* nodes, ascending */
  int nmembers;
  char *data;        /* this node's part */
  size_t ndata;
  char *result;      /* every member's part, in node order */
  size_t nresult;
  int rc;
  char err[512];
  pmix_modex_cbfunc_t cbfunc;
  void *cbdata;
  fg_pmix_fence *next;
};

static void release(void *data) { free(data); }

/* Gives libpmix the fence's outcome; data (NULL or malloc'd) is then libpmix's to release. */
static void answer(pmix_modex_cbfunc_t cbfunc, void *cbdata, pmix_status_t status, char *data,
                   size_t n) {
  cbfunc(status, data, n, cbdata, data ? release : NULL, data);
}

static void fence_free(fg_pmix_fence *f) {
  free(f->host);
  free(f->members);
  free(f->data);
  free(f->result);
  free(f);
}

/* --- the thread pool -------------------------------------------------------------------- */

static int fence_fail(fg_pmix_fence *f, int rc, const char *what, fg_store *s) {
  snprintf(f->err, sizeof f->err, "%s: %s", what, fg_store_errmsg(s));
  return f->rc = rc;
}

static void run_fence(uv_work_t *w) {
  fg_pmix_fence *f = w->data;
  fg_store_options so;
  fg_store_options_init(&so);
  so.connect_timeout_ms = CONNECT_TIMEOUT_MS;
  fg_store *s = NULL;
  char **keys = calloc((size_t)f->nmembers, sizeof *keys);
  void **values = calloc((size_t)f->nmembers, sizeof *values);
  size_t *lens = calloc((size_t)f->nmembers, sizeof *lens);
  int rc = keys && values && lens ? 0 : -ENOMEM;
  if (rc) snprintf(f->err, sizeof f->err, "out of memory");
  for (int i = 0; rc == 0 && i < f->nmembers; i++)
    if (!(keys[i] = fg__asprintf("%s/%d", f->base, f->members[i]))) rc = -ENOMEM;
  char mine[400];
  snprintf(mine, sizeof mine, "%s/%d", f->base, f->me);
  if (rc == 0 && (rc = fg_store_connect(&s, f->host, f->port, &so)) != 0)
    fence_fail(f, rc, "cannot reach the store", NULL);
  if (rc == 0 && (rc = fg_store_set(s, mine, f->data, f->ndata)) != 0)
    fence_fail(f, rc, "cannot write this node's part", s);
  /* multi_get waits for every key; in slices, so that a cancel is seen */
  if (rc == 0) fg_store_set_timeout(s, WAIT_SLICE_MS);
  while (rc == 0) {
    rc = fg_store_multi_get(s, (const char *const *)keys, (size_t)f->nmembers, values, lens);
    if (rc != -ETIMEDOUT) break;
    rc = atomic_load(&f->cancelled) ? -ECANCELED : 0;
    if (rc != 0) snprintf(f->err, sizeof f->err, "cancelled");
  }
  if (rc != 0 && !f->err[0]) fence_fail(f, rc, "waiting for the other nodes' parts", s);
  size_t total = 0;
  for (int i = 0; rc == 0 && i < f->nmembers; i++) total += lens[i];
  if (rc == 0 && total && !(f->result = malloc(total))) rc = -ENOMEM;
  for (int i = 0; rc == 0 && i < f->nmembers; i++) {
    if (lens[i]) memcpy(f->result + f->nresult, values[i], lens[i]);
    f->nresult += lens[i];
  }
  for (int i = 0; keys && i < f->nmembers; i++) free(keys[i]);
  for (int i = 0; values && i < f->nmembers; i++) free(values[i]);
  free(keys);
  free(values);
  free(lens);
  fg_store_close(s);
  f->rc = rc;
}

/* --- the loop --------------------------------------------------------------------------- */

static void unlink_fence(fg_pmix *p, fg_pmix_fence *f) {
  for (fg_pmix_fence **q = &p->fences; *q; q = &(*q)->next)
    if (*q == f) {
      *q = f->next;
      return;
    }
}

static void after_fence(uv_work_t *w, int status) {
  fg_pmix_fence *f = w->data;
  if (f->p) { /* still waited for */
    unlink_fence(f->p, f);
    if (status == 0 && f->rc == 0) {
      answer(f->cbfunc, f->cbdata, PMIX_SUCCESS, f->result, f->nresult);
      f->result = NULL;
    } else {
      fg_error("error: a PMIx fence across %d nodes failed (%s): the ranks' MPI call fails",
               f->nmembers, f->err[0] ? f->err : "cancelled");
      answer(f->cbfunc, f->cbdata, PMIX_ERROR, NULL, 0);
    }
  }
  fence_free(f);
}

/* Which nodes host the fence's procs, as a bit set (bit n: node n); nodes beyond 63 share
 * bit 63, which only widens the name's set, never the members list. */
static uint64_t member_set(const fg_pmix *p, const pmix_proc_t *procs, size_t nprocs,
                           int *members, int *nmembers) {
  char *in = calloc((size_t)p->nnodes, 1);
  uint64_t set = 0;
  *nmembers = 0;
  if (!in) return 0;
  for (size_t i = 0; i < nprocs; i++) {
    if (procs[i].rank == PMIX_RANK_WILDCARD) {
      memset(in, 1, (size_t)p->nnodes);
      break;
    }
    in[fg_pmix_node_of(p, (int)procs[i].rank)] = 1;
  }
  for (int n = 0; n < p->nnodes; n++)
    if (in[n]) {
      members[(*nmembers)++] = n;
      set |= 1ull << (n < 63 ? n : 63);
    }
  free(in);
  return set;
}

static int next_seq(fg_pmix *p, uint64_t set) {
  for (int i = 0; i < p->nseqs; i++)
    if (p->seqs[i].members == set) return p->seqs[i].next++;
  struct fg_pmix_seq *grown = realloc(p->seqs, (size_t)(p->nseqs + 1) * sizeof *grown);
  if (!grown) return -1;
  p->seqs = grown;
  p->seqs[p->nseqs++] = (struct fg_pmix_seq){.members = set, .next = 1};
  return 0;
}

void fg_pmix_fence_start(fg_pmix *p, const pmix_proc_t *procs, size_t nprocs, char *data,
                         size_t ndata, pmix_modex_cbfunc_t cbfunc, void *cbdata) {
  fg_pmix_fence *f = calloc(1, sizeof *f);
  int *members = calloc((size_t)p->nnodes, sizeof *members);
  int nmembers = 0;
  uint64_t set = members ? member_set(p, procs, nprocs, members, &nmembers) : 0;
  if (!f || !members) {
    free(f);
    free(members);
    free(data);
    answer(cbfunc, cbdata, PMIX_ERR_NOMEM, NULL, 0);
    return;
  }
  if (nmembers <= 1 || !p->store_host) { /* only this node: nothing to exchange */
    free(f);
    free(members);
    answer(cbfunc, cbdata, PMIX_SUCCESS, data, ndata);
    return;
  }
  int seq = next_seq(p, set);
  f->p = p;
  atomic_init(&f->cancelled, 0);
  f->host = strdup(p->store_host);
  f->port = p->store_port;
  f->me = p->node;
  f->members = members;
  f->nmembers = nmembers;
  f->data = data;
  f->ndata = ndata;
  f->cbfunc = cbfunc;
  f->cbdata = cbdata;
  f->work.data = f;
  snprintf(f->base, sizeof f->base, "%sfgrun.pmix/fence.%llx.%d", p->store_prefix,
           (unsigned long long)set, seq);
  if (!f->host || seq < 0 || uv_queue_work(p->loop, &f->work, run_fence, after_fence) != 0) {
    fence_free(f);
    answer(cbfunc, cbdata, PMIX_ERR_NOMEM, NULL, 0);
    return;
  }
  f->next = p->fences;
  p->fences = f;
  fg_debug("PMIx fence %s: %zu bytes from this node, %d nodes", f->base, ndata, nmembers);
}

void fg_pmix_fence_cancel_all(fg_pmix *p) {
  while (p->fences) {
    fg_pmix_fence *f = p->fences;
    p->fences = f->next;
    f->p = NULL;
    atomic_store(&f->cancelled, 1);
    answer(f->cbfunc, f->cbdata, PMIX_ERR_TIMEOUT, NULL, 0);
    /* after_fence frees it: at once if it never started, else within a wait slice */
    uv_cancel((uv_req_t *)&f->work);
  }
}

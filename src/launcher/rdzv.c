/* rdzv.c - joining a round: connect, arrive, close the round, give out ranks.
 *
 * An agent takes the next arrival slot of the first round that is still open and writes
 * who it is into it. The round closes when MAX slots are taken, or MIN are and
 * last_call_timeout has passed since this agent saw them (static: when all N are there):
 * whichever member sees that first writes the round's size with compare-and-set, so every
 * member reads the same size. Slots past the size wait for the next round. Node ranks
 * follow from what the members wrote, so every member computes the same ones. */
#include "launcher/rdzv_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

/* Polling: quick while a round forms (a round forms in tens of ms), slower when the
 * wait is long. A connect attempt is cut into slices so a cancel is seen in time. */
enum { POLL_FIRST_MS = 5, POLL_MAX_MS = 200, CONNECT_SLICE_MS = 1000, RETRY_MS = 100,
       NAP_MS = 50 };

static int rdzv_fail(fg_rdzv *rz, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int rdzv_fail(fg_rdzv *rz, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(rz->err, sizeof rz->err, fmt, ap);
  va_end(ap);
  return code;
}

static int ms_of(double seconds) { return (int)FG__MIN(seconds * 1000, 1 << 30); }

/* --- store helpers ----------------------------------------------------------------------- */

static int store_failed(fg_rdzv *rz, int rc) {
  return rdzv_fail(rz, rc, "rendezvous store: %s", fg_store_errmsg(rz->kv));
}

int fg_rdzv_add(fg_rdzv *rz, const char *key, int64_t delta, int64_t *value) {
  int rc = fg_store_add(rz->kv, key, delta, value);
  return rc < 0 ? store_failed(rz, rc) : 0;
}

int fg_rdzv_exists(fg_rdzv *rz, const char *key) {
  int rc = fg_store_check(rz->kv, &key, 1);
  return rc < 0 ? store_failed(rz, rc) : rc;
}

static void copy_value(char *out, size_t outlen, const void *v, size_t len) {
  size_t n = FG__MIN(len, outlen - 1);
  memcpy(out, v, n);
  out[n] = '\0';
}

int fg_rdzv_get(fg_rdzv *rz, const char *key, char *out, size_t outlen) {
  void *v = NULL;
  size_t len = 0;
  int rc = fg_store_get(rz->kv, key, &v, &len);
  if (rc < 0) return store_failed(rz, rc);
  copy_value(out, outlen, v, len);
  free(v);
  return 0;
}

int fg_rdzv_set(fg_rdzv *rz, const char *key, const char *value) {
  int rc = fg_store_set(rz->kv, key, value, strlen(value));
  return rc < 0 ? store_failed(rz, rc) : 0;
}

int fg_rdzv_set_once(fg_rdzv *rz, const char *key, const char *value, char *out,
                     size_t outlen) {
  void *cur = NULL;
  size_t len = 0;
  int rc = fg_store_compare_set(rz->kv, key, "", 0, value, strlen(value), &cur, &len);
  if (rc < 0) return store_failed(rz, rc);
  copy_value(out, outlen, cur, len);
  free(cur);
  return 0;
}

int fg_rdzv_beat(fg_rdzv *rz) {
  int64_t now = fg__now_ms();
  if (rz->id < 0 || now < rz->next_beat_ms) return 0;
  char key[32];
  snprintf(key, sizeof key, "beat.%d", rz->id);
  rz->next_beat_ms = now + ms_of(rz->s.conf.keep_alive_interval);
  return fg_rdzv_add(rz, key, 1, NULL);
}

int fg_rdzv_pause(fg_rdzv *rz, int ms) {
  for (int slept = 0; slept < ms; slept += NAP_MS) {
    if (atomic_load(&rz->cancelled)) return rdzv_fail(rz, -ECANCELED, "cancelled");
    int nap = FG__MIN(NAP_MS, ms - slept);
    nanosleep(&(struct timespec){.tv_nsec = (long)nap * 1000000}, NULL);
  }
  return atomic_load(&rz->cancelled) ? rdzv_fail(rz, -ECANCELED, "cancelled") : 0;
}

int fg_rdzv_job_closed(fg_rdzv *rz, int *status, char *reason, size_t len) {
  int rc = fg_rdzv_exists(rz, "closed");
  if (rc <= 0) return rc;
  char text[512];
  if ((rc = fg_rdzv_get(rz, "closed", text, sizeof text)) < 0) return rc;
  char *rest = NULL;
  long st = strtol(text, &rest, 10);
  *status = (int)st;
  snprintf(reason, len, "%s", rest && *rest == ' ' ? rest + 1 : text);
  return 1;
}

void fg_rdzv_node_name(const fg_rdzv *rz, int node_rank, char *out, size_t len) {
  if (!rz->round.nodes || node_rank < 0 || node_rank >= rz->round.nnodes) {
    snprintf(out, len, "node %d", node_rank);
    return;
  }
  const fg_rdzv_node *n = &rz->round.nodes[node_rank];
  snprintf(out, len, "node %d (%s, pid %d)", node_rank, n->addr, n->pid);
}

int fg_rdzv_dead_after_ms(const fg_rdzv *rz) {
  return ms_of(rz->s.conf.keep_alive_interval * rz->s.conf.keep_alive_max_attempt);
}

/* --- the handle ---------------------------------------------------------------------------- */

int fg_rdzv_new(fg_rdzv **out, const fg_rdzv_settings *s) {
  fg_rdzv *rz = calloc(1, sizeof *rz);
  if (!rz) return -ENOMEM;
  rz->s = *s;
  rz->host = strdup(s->host);
  rz->run_id = strdup(s->run_id);
  rz->role = strdup(s->role);
  rz->id = -1;
  atomic_init(&rz->cancelled, 0);
  if (!rz->host || !rz->run_id || !rz->role) {
    fg_rdzv_free(rz);
    return -ENOMEM;
  }
  rz->s.host = rz->host;
  rz->s.run_id = rz->run_id;
  rz->s.role = rz->role;
  *out = rz;
  return 0;
}

void fg_rdzv_free(fg_rdzv *rz) {
  if (!rz) return;
  fg_rdzv_round_free(&rz->round);
  free(rz->peers);
  fg_store_close(rz->kv);
  fg_store_close(rz->conn);
  free(rz->host);
  free(rz->run_id);
  free(rz->role);
  free(rz);
}

void fg_rdzv_cancel(fg_rdzv *rz) { atomic_store(&rz->cancelled, 1); }

const char *fg_rdzv_errmsg(const fg_rdzv *rz) { return rz->err; }

void fg_rdzv_round_free(fg_rdzv_round *r) {
  free(r->nodes);
  memset(r, 0, sizeof *r);
}

/* --local_addr, else the address this host reaches the store from: what the others can
 * reach it at. */
static void find_own_address(fg_rdzv *rz) {
  snprintf(rz->addr, sizeof rz->addr, "?");
  if (gethostname(rz->hostname, sizeof rz->hostname) != 0) snprintf(rz->hostname, 2, "?");
  if (rz->s.local_addr) {
    snprintf(rz->addr, sizeof rz->addr, "%s", rz->s.local_addr);
    return;
  }
  char port[8];
  snprintf(port, sizeof port, "%d", rz->s.port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM};
  struct addrinfo *ai = NULL;
  if (getaddrinfo(rz->host, port, &hints, &ai) != 0) return;
  int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
      getsockname(fd, (struct sockaddr *)&ss, &len) == 0) {
    const void *a = ss.ss_family == AF_INET6 ? (void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                                             : (void *)&((struct sockaddr_in *)&ss)->sin_addr;
    inet_ntop(ss.ss_family, a, rz->addr, sizeof rz->addr);
  }
  if (fd >= 0) close(fd);
  freeaddrinfo(ai);
}

/* Connects within read_timeout in short attempts (so a cancel is seen), then once more with
 * the full timeout, which later reconnects reuse. */
static int connect_store(fg_rdzv *rz) {
  int timeout = ms_of(rz->s.conf.read_timeout);
  int64_t deadline = fg__now_ms() + timeout;
  fg_store_options so;
  fg_store_options_init(&so);
  so.timeout_ms = timeout;
  for (;;) {
    so.connect_timeout_ms = (int)FG__MAX(1, FG__MIN(deadline - fg__now_ms(), CONNECT_SLICE_MS));
    fg_store *probe = NULL;
    int rc = fg_store_connect(&probe, rz->host, rz->s.port, &so);
    fg_store_close(probe);
    if (rc == 0) break;
    if (rc == -EACCES || rc == FG_EPROTO || rc == -EINVAL) /* no retry mends these */
      return rdzv_fail(rz, rc, "cannot use the rendezvous store at %s:%d (%s)", rz->host,
                       rz->s.port, fg_store_errmsg(NULL));
    if (fg__now_ms() >= deadline)
      return rdzv_fail(rz, rc, "cannot reach the rendezvous store at %s:%d within %g s (%s)",
                       rz->host, rz->s.port, rz->s.conf.read_timeout, fg_store_errmsg(NULL));
    if ((rc = fg_rdzv_pause(rz, RETRY_MS)) < 0) return rc;
  }
  so.connect_timeout_ms = timeout;
  int rc = fg_store_connect(&rz->conn, rz->host, rz->s.port, &so);
  if (rc != 0)
    return rdzv_fail(rz, rc, "cannot reach the rendezvous store at %s:%d: %s", rz->host,
                     rz->s.port, fg_store_errmsg(NULL));
  char scope[320];
  snprintf(scope, sizeof scope, "fgrun.rdzv/%s", rz->run_id);
  if (fg_store_scope(rz->conn, scope, &rz->kv) != 0)
    return rdzv_fail(rz, -ENOMEM, "out of memory");
  find_own_address(rz);
  int64_t id;
  if ((rc = fg_rdzv_add(rz, "agents", 1, &id)) < 0) return rc;
  rz->id = (int)id;
  return fg_rdzv_beat(rz);
}

/* --- what an agent says about itself -------------------------------------------------------- */

static void format_node(const fg_rdzv *rz, char *out, size_t len) {
  snprintf(out, len, "id=%d pid=%d nproc=%d node_rank=%d nnodes=%d:%d addr=%s host=%s role=%s",
           rz->id, (int)getpid(), rz->s.nproc, rz->s.static_rank, rz->s.min_nodes,
           rz->s.max_nodes, rz->addr, rz->hostname, rz->role);
}

static int parse_node(const char *text, fg_rdzv_node *n, int *min, int *max) {
  memset(n, 0, sizeof *n);
  int used = 0;
  if (sscanf(text, "id=%d pid=%d nproc=%d node_rank=%d nnodes=%d:%d addr=%63s host=%63s %n",
             &n->id, &n->pid, &n->nproc, &n->node_rank, min, max, n->addr, n->host,
             &used) != 8 ||
      strncmp(text + used, "role=", 5) != 0)
    return -EPROTO;
  snprintf(n->role, sizeof n->role, "%s", text + used + 5);
  return 0;
}

/* --- ranks --------------------------------------------------------------------------------- */

/* Addresses compare as numbers (10.0.0.9 before 10.0.0.10), names as text. */
static int compare_addr(const char *a, const char *b) {
  unsigned char x[16] = {0}, y[16] = {0};
  int xa = inet_pton(AF_INET, a, x + 12) == 1 || inet_pton(AF_INET6, a, x) == 1;
  int ya = inet_pton(AF_INET, b, y + 12) == 1 || inet_pton(AF_INET6, b, y) == 1;
  if (xa && ya) return memcmp(x, y, sizeof x);
  return strcmp(a, b);
}

static int by_address(const void *pa, const void *pb) {
  const fg_rdzv_node *a = pa, *b = pb;
  int c = compare_addr(a->addr, b->addr);
  if (c) return c;
  if (a->pid != b->pid) return a->pid < b->pid ? -1 : 1;
  return (a->id > b->id) - (a->id < b->id);
}

static int by_node_rank(const void *pa, const void *pb) {
  const fg_rdzv_node *a = pa, *b = pb;
  return (a->node_rank > b->node_rank) - (a->node_rank < b->node_rank);
}

/* nodes are sorted by node rank; a rank given twice is named before a rank nobody has. */
static int check_static_ranks(const fg_rdzv_round *r, char *err, size_t errlen) {
  for (int i = 1; i < r->nnodes; i++) {
    const fg_rdzv_node *n = &r->nodes[i];
    if (n->node_rank == n[-1].node_rank)
      return fg__fail(err, errlen, -EINVAL,
                     "node rank %d is claimed by two agents: %s (%s, pid %d) and %s (%s, "
                     "pid %d); give each node its own --node_rank", n->node_rank, n[-1].addr,
                     n[-1].host, n[-1].pid, n->addr, n->host, n->pid);
  }
  for (int i = 0; i < r->nnodes; i++) {
    const fg_rdzv_node *n = &r->nodes[i];
    if (n->node_rank != i)
      return fg__fail(err, errlen, -EINVAL, "no agent has node rank %d (the %d agents have "
                     "node ranks up to %d)", i, r->nnodes, r->nodes[r->nnodes - 1].node_rank);
  }
  return 0;
}

int fg_rdzv_assign(fg_rdzv_round *r, int is_static, int my_id, char *err, size_t errlen) {
  qsort(r->nodes, (size_t)r->nnodes, sizeof *r->nodes, is_static ? by_node_rank : by_address);
  if (is_static) {
    int rc = check_static_ranks(r, err, errlen);
    if (rc) return rc;
  }
  const fg_rdzv_node *me = NULL;
  for (int i = 0; i < r->nnodes; i++) {
    r->nodes[i].node_rank = i;
    if (r->nodes[i].id == my_id) me = &r->nodes[i];
  }
  if (!me) return fg__fail(err, errlen, -EINVAL, "this agent is not in the round");
  r->node_rank = me->node_rank;
  r->rank_base = r->world_size = r->role_rank_base = r->role_world_size = 0;
  for (int i = 0; i < r->nnodes; i++) {
    const fg_rdzv_node *n = &r->nodes[i];
    int same_role = strcmp(n->role, me->role) == 0;
    if (i < me->node_rank) r->rank_base += n->nproc;
    if (same_role && i < me->node_rank) r->role_rank_base += n->nproc;
    r->world_size += n->nproc;
    if (same_role) r->role_world_size += n->nproc;
  }
  return 0;
}

/* --- joining ------------------------------------------------------------------------------ */

void fg_rdzv_key(char *out, size_t len, int round, const char *what, int index) {
  if (index >= 0)
    snprintf(out, len, "%d/%s.%d", round, what, index);
  else
    snprintf(out, len, "%d/%s", round, what);
}

static int first_open_round(fg_rdzv *rz, int round, int *out) {
  int64_t latest;
  int rc = fg_rdzv_add(rz, "latest", 0, &latest);
  if (rc < 0) return rc;
  if (latest > round) round = (int)latest;
  for (;;) {
    char key[64];
    fg_rdzv_key(key, sizeof key, round, "size", -1);
    if ((rc = fg_rdzv_exists(rz, key)) < 0) return rc;
    if (rc == 0) break;
    round++;
  }
  *out = round;
  return 0;
}

static int read_node(fg_rdzv *rz, int round, int slot, fg_rdzv_node *n, int *min, int *max) {
  char key[64], text[512];
  fg_rdzv_key(key, sizeof key, round, "node", slot);
  int rc = fg_rdzv_get(rz, key, text, sizeof text);
  if (rc < 0) return rc;
  if (parse_node(text, n, min, max) != 0)
    return rdzv_fail(rz, -EPROTO, "round %d, slot %d: cannot read '%s'", round, slot, text);
  return 0;
}

static int round_is_full(fg_rdzv *rz, int round) {
  char key[64], text[32];
  fg_rdzv_key(key, sizeof key, round, "size", -1);
  return round >= 0 && fg_rdzv_exists(rz, key) == 1 &&
         fg_rdzv_get(rz, key, text, sizeof text) == 0 && atoi(text) >= rz->s.max_nodes;
}

/* The static rendezvous names the missing node ranks; c10d counts them (or says the job
 * is full). */
static int join_timed_out(fg_rdzv *rz, int round, int64_t joined) {
  int need = rz->s.min_nodes;
  const char *id = rz->run_id;
  double t = rz->s.conf.join_timeout;
  int was_member = rz->round.nodes && rz->round.round == round - 1;
  if (rz->s.static_rank < 0 && !was_member && round_is_full(rz, round - 1))
    return rdzv_fail(rz, -ETIMEDOUT,
                     "rendezvous '%s' (round %d) timed out after %g s: round %d runs with the "
                     "most nodes --nnodes allows (%d), so this node was not let in",
                     id, round, t, round - 1, rz->s.max_nodes);
  if (rz->s.static_rank < 0)
    return rdzv_fail(rz, -ETIMEDOUT,
                     "rendezvous '%s' (round %d) timed out after %g s: %d node%s joined, at "
                     "least %d needed (%d missing)", id, round, t, (int)joined,
                     joined == 1 ? "" : "s", need, need - (int)joined);
  char missing[256] = "";
  size_t used = 0;
  for (int r = 0; r < need && used < sizeof missing - 16; r++) {
    int seen = 0;
    for (int slot = 0; slot < joined && !seen; slot++) {
      fg_rdzv_node n;
      int lo, hi;
      seen = read_node(rz, round, slot, &n, &lo, &hi) == 0 && n.node_rank == r;
    }
    if (!seen) used += (size_t)snprintf(missing + used, sizeof missing - used, "%s%d",
                                        used ? ", " : "", r);
  }
  return rdzv_fail(rz, -ETIMEDOUT,
                   "rendezvous '%s' (round %d) timed out after %g s: %d of %d nodes joined; "
                   "missing node rank%s %s", id, round, t, (int)joined, need,
                   strchr(missing, ',') ? "s" : "", missing);
}

/* Polls until the round has a size, closing it when its time has come. */
static int await_size(fg_rdzv *rz, int round, int64_t deadline, int64_t *size) {
  char size_key[64], joined_key[64];
  fg_rdzv_key(size_key, sizeof size_key, round, "size", -1);
  fg_rdzv_key(joined_key, sizeof joined_key, round, "joined", -1);
  int64_t min_seen_ms = 0;
  int poll = POLL_FIRST_MS;
  for (;;) {
    int status, rc;
    char reason[400];
    /* A closed round comes first: its members learn that the job is over, if it is, from
     * their keep-alives, and end with the others. */
    if ((rc = fg_rdzv_beat(rz)) < 0 || (rc = fg_rdzv_exists(rz, size_key)) < 0) return rc;
    char text[32];
    if (rc == 1) {
      if ((rc = fg_rdzv_get(rz, size_key, text, sizeof text)) < 0) return rc;
      *size = strtoll(text, NULL, 10);
      return 0;
    }
    if ((rc = fg_rdzv_job_closed(rz, &status, reason, sizeof reason)) < 0) return rc;
    if (rc == 1) return rdzv_fail(rz, -ESHUTDOWN, "the job is over: %s", reason);
    int64_t joined, now = fg__now_ms();
    if ((rc = fg_rdzv_add(rz, joined_key, 0, &joined)) < 0) return rc;
    if (joined >= rz->s.min_nodes && !min_seen_ms) min_seen_ms = now;
    int full = joined >= rz->s.max_nodes;
    int last_call_over = min_seen_ms &&
        (now - min_seen_ms >= ms_of(rz->s.conf.last_call_timeout) || now >= deadline);
    if (full || last_call_over) {
      snprintf(text, sizeof text, "%lld", (long long)FG__MIN(joined, (int64_t)rz->s.max_nodes));
      if ((rc = fg_rdzv_set_once(rz, size_key, text, text, sizeof text)) < 0) return rc;
      snprintf(text, sizeof text, "%d", round);
      if ((rc = fg_rdzv_set(rz, "latest", text)) < 0) return rc;
      continue; /* read the size that stands */
    }
    if (now >= deadline) return join_timed_out(rz, round, joined);
    if ((rc = fg_rdzv_pause(rz, poll)) < 0) return rc;
    poll = FG__MIN(poll * 2, POLL_MAX_MS);
  }
}

/* Reads the members' slots (each is written just after its slot was taken). */
static int gather(fg_rdzv *rz, int round, int size, fg_rdzv_round *out) {
  memset(out, 0, sizeof *out);
  out->round = round;
  out->nnodes = size;
  if (!(out->nodes = calloc((size_t)size, sizeof *out->nodes)))
    return rdzv_fail(rz, -ENOMEM, "out of memory");
  int64_t deadline = fg__now_ms() + ms_of(rz->s.conf.read_timeout);
  for (int slot = 0; slot < size; slot++) {
    char key[64];
    fg_rdzv_key(key, sizeof key, round, "node", slot);
    int rc;
    while ((rc = fg_rdzv_exists(rz, key)) == 0) {
      if (fg__now_ms() >= deadline)
        return rdzv_fail(rz, -ETIMEDOUT, "round %d: the agent in slot %d never said who it is",
                         round, slot);
      if ((rc = fg_rdzv_pause(rz, POLL_FIRST_MS)) < 0) return rc;
    }
    int lo, hi;
    if (rc < 0 || (rc = read_node(rz, round, slot, &out->nodes[slot], &lo, &hi)) < 0) return rc;
    const fg_rdzv_node *n = &out->nodes[slot];
    if (lo != rz->s.min_nodes || hi != rz->s.max_nodes)
      return rdzv_fail(rz, -EINVAL,
                       "the agent at %s (%s, pid %d) was started with --nnodes %d:%d, this one "
                       "with %d:%d", n->addr, n->host, n->pid, lo, hi, rz->s.min_nodes,
                       rz->s.max_nodes);
  }
  return fg_rdzv_assign(out, rz->s.static_rank >= 0, rz->id, rz->err, sizeof rz->err);
}

static int keep_round(fg_rdzv *rz, const fg_rdzv_round *r) {
  fg_rdzv_round_free(&rz->round);
  free(rz->peers);
  rz->round = *r;
  rz->round.nodes = malloc((size_t)r->nnodes * sizeof *r->nodes);
  rz->peers = calloc((size_t)r->nnodes, sizeof *rz->peers);
  if (!rz->round.nodes || !rz->peers) return rdzv_fail(rz, -ENOMEM, "out of memory");
  memcpy(rz->round.nodes, r->nodes, (size_t)r->nnodes * sizeof *r->nodes);
  int64_t now = fg__now_ms();
  for (int i = 0; i < r->nnodes; i++) rz->peers[i] = (fg_rdzv_peer){.beats = -1, .seen_ms = now};
  rz->ended_seen = 0;
  return 0;
}

int fg_rdzv_join(fg_rdzv *rz, int first_round, fg_rdzv_round *out) {
  memset(out, 0, sizeof *out);
  int rc;
  if (!rz->kv && (rc = connect_store(rz)) < 0) return rc;
  int64_t deadline = fg__now_ms() + ms_of(rz->s.conf.join_timeout);
  int round = first_round;
  int64_t slot = 0, size = 0;
  for (;;) {
    if ((rc = first_open_round(rz, round, &round)) < 0) return rc;
    char key[64], me[512];
    fg_rdzv_key(key, sizeof key, round, "joined", -1);
    if ((rc = fg_rdzv_add(rz, key, 1, &slot)) < 0) return rc;
    slot--;
    fg_rdzv_key(key, sizeof key, round, "node", (int)slot);
    format_node(rz, me, sizeof me);
    if ((rc = fg_rdzv_set(rz, key, me)) < 0) return rc;
    fg_debug("rendezvous: joined round %d in slot %lld", round, (long long)slot);
    if ((rc = await_size(rz, round, deadline, &size)) < 0) return rc;
    if (slot < size) break;
    fg_info("rendezvous round %d closed with %lld nodes before this one arrived; waiting for "
            "the next round", round, (long long)size);
    round++;
  }
  if ((rc = gather(rz, round, (int)size, out)) < 0 || (rc = keep_round(rz, out)) < 0) {
    fg_rdzv_round_free(out);
    return rc;
  }
  return 0;
}

/* bench_coll_peers.c - what `fgbench --side-by-side` times beside fgcomm:
 *
 *   raw-gloo  gloo's own loop (bench_gloo_raw.cc) on a context of its own, beside gloo
 *   raw-mpi   MPI's own loop (bench_mpi.c), beside mpi (so under mpirun; beside gloo too
 *             under mpirun with --peers)
 *   torch     torch 1.13's ProcessGroupGloo, beside gloo: every rank starts one python
 *             (scripts/bench/torch_allreduce.py --serve) and asks it for one batch at a time
 *             over a pipe, so that its batches take turns with ours. While one side runs, the
 *             other waits in a blocking read: it takes no CPU from the side being timed.
 *
 * Every peer takes float32 and sum (the raw loops' only type), root 0. Setting a peer up
 * is collective; a rank whose peer cannot start makes every rank leave it out. */
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include "common/host.h"
#include "common/util.h"
#include "tools/bench_coll.h"
#include "tools/bench_raw.h"

/* Setting up a peer: how long a rank waits for its python to import torch and connect. */
#define TORCH_START_MS 180000

/* Peers only run beside host-memory backends, so plain host buffers do here. */
static int all_ok(fg_comm *w, int ok) {
  int64_t v = ok;
  return fg_allreduce(w, &v, &v, 1, FG_INT64, FG_REDOP_MIN) == 0 && v;
}

static int in_list(const char *list, const char *name) {
  size_t n = strlen(name);
  for (const char *p = list; (p = strstr(p, name)); p += n)
    if ((p == list || p[-1] == ',') && (p[n] == '\0' || p[n] == ',')) return 1;
  return 0;
}

static int plain_float_sum(const char *coll, fg_dtype dt, fg_redop op, int root) {
  const bc_coll *c = bc_find(coll);
  return c && dt == FG_FLOAT32 && root == 0 && (op == FG_REDOP_SUM || !(c->flags & BC_REDUCES));
}

static int named(const char *(*coll_at)(int), const char *coll) {
  for (int i = 0; coll_at(i); i++)
    if (!strcmp(coll_at(i), coll)) return 1;
  return 0;
}

/* Where a peer listens: loopback when every rank is on this host. */
static void listen_host(fg_comm *w, char *host, size_t len) {
  snprintf(host, len, "127.0.0.1");
  if (fg_comm_local_size(w) != fg_comm_size(w)) fg__advertised_host(host, len);
}

/* Rank 0's s, on every rank. */
static int share_string(fg_comm *w, char *s, size_t cap) {
  void *data = s;
  size_t len = strlen(s);
  int rc = fg_broadcast_bytes(w, &data, &len, 0);
  if (rc == 0 && fg_comm_rank(w) != 0) {
    snprintf(s, cap, "%s", (char *)data);
    free(data);
  }
  return rc;
}

/* --- raw MPI ----------------------------------------------------------------------------- */

static int mpi_supports(void *state, const char *coll, fg_dtype dt, fg_redop op, int root) {
  (void)state;
  return plain_float_sum(coll, dt, op, root) && named(fg_bench_raw_mpi_coll, coll);
}

static int mpi_time(void *state, const char *coll, size_t bytes, int iters, int warmup,
                    double *us) {
  (void)state;
  return fg_bench_raw_mpi(coll, bytes, iters, warmup, us);
}

static void mpi_close(void *state) { (void)state; }

/* --- raw gloo ---------------------------------------------------------------------------- */

static int gloo_supports(void *state, const char *coll, fg_dtype dt, fg_redop op, int root) {
  (void)state;
  return plain_float_sum(coll, dt, op, root) && named(fg_bench_raw_gloo_coll, coll);
}

static int gloo_time(void *state, const char *coll, size_t bytes, int iters, int warmup,
                     double *us) {
  return fg_bench_raw_gloo(state, coll, bytes, iters, warmup, us);
}

static void gloo_close(void *state) { fg_bench_raw_gloo_close(state); }

static void remove_dir(const char *path) {
  DIR *d = opendir(path);
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char file[PATH_MAX];
    snprintf(file, sizeof file, "%s/%s", path, e->d_name);
    unlink(file);
  }
  if (d) closedir(d);
  rmdir(path);
}

/* gloo meets through files in a directory rank 0 makes and names to the others. */
static int open_raw_gloo(fg_comm *w, const bc_options *o, bc_peer *p) {
  int me = fg_comm_rank(w);
  char dir[PATH_MAX] = "", host[256], err[512] = "";
  if (me == 0) {
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/fgbench-gloo-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) dir[0] = '\0';
  }
  if (share_string(w, dir, sizeof dir) != 0) return 0;
  listen_host(w, host, sizeof host);
  fg_bench_gloo *g = NULL;
  int rc = dir[0] ? fg_bench_raw_gloo_open(me, fg_comm_size(w), dir, host,
                                           o->timeout_ms > 0 ? o->timeout_ms : 60000, &g, err,
                                           sizeof err)
                  : -ENOENT;
  if (rc != 0)
    fprintf(stderr, "fgbench: rank %d: raw gloo: %s\n", me, err[0] ? err : "no directory");
  int ok = all_ok(w, rc == 0);
  if (me == 0 && dir[0] && fg_barrier(w) == 0) remove_dir(dir);
  if (me != 0) fg_barrier(w);
  if (!ok) {
    fg_bench_raw_gloo_close(g);
    return 0;
  }
  *p = (bc_peer){"raw-gloo", g, gloo_supports, gloo_time, gloo_close};
  return 1;
}

/* --- torch ------------------------------------------------------------------------------- */

typedef struct torch_peer {
  pid_t pid;
  FILE *to, *from;
} torch_peer;

static const char *const torch_colls[] = {"allreduce", "broadcast", "reduce", "allgather",
                                          "alltoall"};

static int torch_supports(void *state, const char *coll, fg_dtype dt, fg_redop op, int root) {
  (void)state;
  for (size_t i = 0; i < FG_ARRAY_LEN(torch_colls); i++)
    if (!strcmp(coll, torch_colls[i])) return plain_float_sum(coll, dt, op, root);
  return 0;
}

/* One line from the child within ms (-1: no limit); 0 or -errno. */
static int read_line(torch_peer *t, char *line, size_t len, int ms) {
  struct pollfd pfd = {.fd = fileno(t->from), .events = POLLIN};
  if (ms >= 0 && poll(&pfd, 1, ms) <= 0) return -ETIMEDOUT;
  if (!fgets(line, (int)len, t->from)) return -EPIPE;
  line[strcspn(line, "\n")] = '\0';
  return 0;
}

static int torch_time(void *state, const char *coll, size_t bytes, int iters, int warmup,
                      double *us) {
  torch_peer *t = state;
  char line[512];
  fprintf(t->to, "%s %zu %d %d\n", coll, bytes, iters, warmup);
  fflush(t->to);
  int rc = read_line(t, line, sizeof line, -1);
  if (rc == 0 && sscanf(line, "%lf", us) == 1) return 0;
  fprintf(stderr, "fgbench: torch: %s\n", rc ? "its python ended" : line);
  return FG_EBACKEND;
}

static void torch_close(void *state) {
  torch_peer *t = state;
  if (!t) return;
  if (t->to) {
    fputs("quit\n", t->to);
    fclose(t->to);
  }
  if (t->from) fclose(t->from);
  /* A child stuck in a collective its peers left gets a few seconds, then a kill. */
  for (int i = 0; i < 300 && t->pid > 0 && waitpid(t->pid, NULL, WNOHANG) == 0; i++)
    usleep(10000);
  if (t->pid > 0 && waitpid(t->pid, NULL, WNOHANG) == 0) {
    kill(t->pid, SIGKILL);
    waitpid(t->pid, NULL, 0);
  }
  free(t);
}

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0), port = 0;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
      getsockname(fd, (struct sockaddr *)&a, &len) == 0)
    port = ntohs(a.sin_port);
  if (fd >= 0) close(fd);
  return port;
}

/* The script of the checkout this fgbench was built in: the nearest directory above the
 * executable with scripts/bench/torch_allreduce.py (build/bin, build/asan/bin, ...). */
static const char *default_script(char *path, size_t len) {
  static const char tail[] = "/scripts/bench/torch_allreduce.py";
  char dir[PATH_MAX - sizeof tail];
  ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
  dir[n > 0 ? n : 0] = '\0';
  for (char *slash; (slash = strrchr(dir, '/')) && slash != dir;) {
    *slash = '\0';
    snprintf(path, len, "%s%s", dir, tail);
    if (access(path, R_OK) == 0) return path;
  }
  snprintf(path, len, "scripts/bench/torch_allreduce.py");
  return path;
}

static torch_peer *spawn_torch(const bc_options *o, int rank, int size, const char *addr,
                               int port) {
  char script[PATH_MAX], init[300], r[16], n[16];
  const char *file = o->torch_script ? o->torch_script : default_script(script, sizeof script);
  snprintf(init, sizeof init, "tcp://%s:%d", addr, port);
  snprintf(r, sizeof r, "%d", rank);
  snprintf(n, sizeof n, "%d", size);
  int in[2], out[2];
  torch_peer *t = calloc(1, sizeof *t);
  if (!t || pipe(in) != 0) return free(t), NULL;
  if (pipe(out) != 0) {
    close(in[0]), close(in[1]), free(t);
    return NULL;
  }
  fflush(NULL);
  t->pid = fork();
  if (t->pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    close(in[0]), close(in[1]), close(out[0]), close(out[1]);
    setenv("OMP_NUM_THREADS", "1", 1); /* one rank per core at most: no thread pools */
    unsetenv("TORCHELASTIC_USE_AGENT_STORE"); /* torch would join the launcher's store */
    execl(o->python, o->python, file, "--serve", "--init-method", init, "--rank", r,
          "--world-size", n, (char *)NULL);
    printf("error: cannot run %s: %s\n", o->python, strerror(errno));
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  t->to = fdopen(in[1], "w");
  t->from = fdopen(out[0], "r");
  if (t->pid < 0 || !t->to || !t->from) {
    torch_close(t);
    return NULL;
  }
  return t;
}

/* Waits for the child's next word; prints what it said instead, if anything else. */
static int expect_word(int me, torch_peer *t, const char *word) {
  char line[512];
  int rc = t ? read_line(t, line, sizeof line, TORCH_START_MS) : -ENOMEM;
  if (rc == 0 && !strcmp(line, word)) return 1;
  fprintf(stderr, "fgbench: rank %d: torch peer: %s\n", me,
          rc == -ETIMEDOUT ? "no answer from python" : rc ? "python ended" : line);
  return 0;
}

/* Two steps, agreed by every rank: python imports torch, then connects. A python that
 * fails to import would otherwise leave the others waiting out the rendezvous. */
static int open_torch(fg_comm *w, const bc_options *o, bc_peer *p) {
  int me = fg_comm_rank(w);
  int64_t port = me == 0 ? free_port() : 0;
  char addr[256];
  if (fg_broadcast(w, &port, 1, FG_INT64, 0) != 0) return 0;
  /* The store is rank 0's python's: rank 0's address, as rank 0 names it. */
  listen_host(w, addr, sizeof addr);
  if (share_string(w, addr, sizeof addr) != 0) return 0;
  torch_peer *t = port > 0 ? spawn_torch(o, me, fg_comm_size(w), addr, (int)port) : NULL;
  int ok = all_ok(w, expect_word(me, t, "imported"));
  if (ok) {
    fputs("connect\n", t->to);
    fflush(t->to);
    ok = all_ok(w, expect_word(me, t, "ready"));
  }
  if (!ok) {
    torch_close(t);
    return 0;
  }
  *p = (bc_peer){"torch", t, torch_supports, torch_time, torch_close};
  return 1;
}

/* --- the list ---------------------------------------------------------------------------- */

int bc_peers_open(fg_comm *w, const bc_options *o, bc_peer *peers) {
  const char *be = fg_comm_backend(w);
  const char *list = o->peers ? o->peers : !strcmp(be, "gloo") ? "raw-gloo,torch"
                                         : !strcmp(be, "mpi")  ? "raw-mpi"
                                                               : "";
  int n = 0, me = fg_comm_rank(w);
  if (!fg_comm_host_memory(w) && *list) {
    if (me == 0) printf("# side by side: none beside %s (the raw loops use host memory)\n", be);
    return 0;
  }
  if (in_list(list, "raw-gloo") && open_raw_gloo(w, o, &peers[n])) n++;
  if (in_list(list, "raw-mpi") && fg_bench_raw_mpi_ready())
    peers[n++] = (bc_peer){"raw-mpi", NULL, mpi_supports, mpi_time, mpi_close};
  if (in_list(list, "torch") && open_torch(w, o, &peers[n])) n++;
  if (me == 0) {
    printf("# side by side:");
    for (int i = 0; i < n; i++) printf(" %s", peers[i].name);
    printf("%s (ratio = fgcomm busbw / theirs)\n", n ? "" : " none could start");
  }
  return n;
}

void bc_peers_close(bc_peer *peers, int n) {
  for (int i = 0; i < n; i++) peers[i].close(peers[i].state);
}

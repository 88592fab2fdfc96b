/* build_sync.c - one process builds a target while the others wait, then all
 * continue together.
 *
 * With a group (world size > 1), rank 0 of the group builds: globally, or one
 * per node with --local. Without one (a single process), an exclusive lock on
 * <target>.build_lock decides: the first holder builds, and a later holder that
 * finds the target created or changed meanwhile does not build it again. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "scenarios/scenario.h"

#define BUILD_SECONDS 0.5
#define MIN_WAIT_SECONDS 0.4
#define MAX_SPREAD_SECONDS 0.1

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

static int write_target(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) return -errno;
  fputs(text, f);
  return fclose(f) == 0 ? 0 : -errno;
}

/* What one pass through the context saw, on this rank. */
typedef struct pass {
  int built;
  double waited;  /* seconds from the common start until this rank was let through */
  double exit_at; /* wall clock when it left the context */
} pass;

/* The context: the builder builds then joins the group barrier; everyone else waits at
 * that barrier; then a final barrier for the whole world. */
static int build_sync(scn *s, fg_comm *group, const char *target, pass *out) {
  int rc = scn_comm(s, s->world, fg_barrier(s->world), "barrier before the build");
  if (rc) return rc;
  double start = scn_now();
  int builder = fg_comm_rank(group) == 0 || (scn_fault(s, "two-builders") && fg_comm_rank(group) == 1);
  out->built = 0;
  if (builder) {
    sleep_s(BUILD_SECONDS); /* the build's work */
    char text[128];
    snprintf(text, sizeof text, "built by rank %d\n", s->rank);
    if ((rc = write_target(target, text)) != 0) {
      scn_error(s, "writing %s: %s", target, strerror(-rc));
      return rc;
    }
    out->built = 1;
  }
  if (!builder && scn_fault(s, "no-wait")) out->waited = scn_now() - start;
  if ((rc = scn_comm(s, group, fg_barrier(group), "waiting for the builder"))) return rc;
  if (!builder && !scn_fault(s, "no-wait")) out->waited = scn_now() - start;
  if (builder) out->waited = scn_now() - start;
  rc = scn_comm(s, s->world, fg_barrier(s->world), "barrier leaving the context");
  if (scn_fault(s, "straggler") && s->rank == s->size - 1) sleep_s(0.3);
  out->exit_at = wall_now();
  return rc;
}

/* The group mode's layout: which node this rank is on, and how many there are. */
typedef struct layout {
  int local, node, nodes, per_node;
} layout;

/* Check 1: rank 0 of each group built, nobody else, and the target holds its text. */
static void check_builders(scn *s, const layout *l, const pass *all, const char *target) {
  int builders = 0, wrong = -1;
  for (int r = 0; r < s->size; r++) {
    builders += all[r].built;
    int should = l->local ? r % l->per_node == 0 : r == 0;
    if (all[r].built != should && wrong < 0) wrong = r;
  }
  scn_check(s, builders == l->nodes && wrong < 0,
            "exactly one builder per %s: %d builder(s) for %d %s%s", l->local ? "node" : "group",
            builders, l->nodes, l->local ? "node(s)" : "group",
            wrong >= 0 ? " (rank mismatch)" : "");
  char want[64], got[128] = "";
  snprintf(want, sizeof want, "built by rank %d\n", l->local ? l->node * l->per_node : 0);
  FILE *f = fopen(target, "r");
  if (f) {
    got[fread(got, 1, sizeof got - 1, f)] = '\0';
    fclose(f);
  }
  scn_check(s, f && !strcmp(got, want), "the target exists and holds the builder's text ('%.*s')",
            (int)strcspn(got, "\n"), got);
}

/* Check 2: no waiter was let through before the builder had worked most of its time. */
static void check_waited(scn *s, const pass *all) {
  double least = 1e9;
  int who = -1;
  for (int r = 0; r < s->size; r++)
    if (!all[r].built && all[r].waited < least) least = all[r].waited, who = r;
  scn_check(s, who < 0 || least >= MIN_WAIT_SECONDS,
            "waiters were held: the earliest (rank %d) was let through %.3f s after the start "
            "(builder works %.1f s; at least %.1f s expected)",
            who, who < 0 ? 0.0 : least, BUILD_SECONDS, MIN_WAIT_SECONDS);
}

/* Check 3: everyone left the context at about the same moment. */
static void check_spread(scn *s, const pass *all) {
  double lo = 1e18, hi = -1e18;
  for (int r = 0; r < s->size; r++) {
    if (all[r].exit_at < lo) lo = all[r].exit_at;
    if (all[r].exit_at > hi) hi = all[r].exit_at;
  }
  scn_check(s, hi - lo < MAX_SPREAD_SECONDS,
            "all continued together: exit times spread %.1f ms (under %.0f ms expected)",
            (hi - lo) * 1e3, MAX_SPREAD_SECONDS * 1e3);
}

static int run_group_mode(scn *s, int local) {
  layout l = {local, 0, 1, fg_comm_local_size(s->world)};
  fg_comm *group = s->world;
  if (local && l.per_node < s->size) {
    l.node = s->rank / l.per_node;
    l.nodes = (s->size + l.per_node - 1) / l.per_node;
    int rc = fg_comm_split(s->world, l.node, s->rank, &group);
    if (scn_comm(s, s->world, rc, "making the per-node group")) return rc;
  }
  scn_log(s, "%s mode: %d node(s), builder is rank 0 of %s", local ? "local" : "global",
          l.nodes, local ? "each node" : "the world");
  pass *all = calloc((size_t)s->size, sizeof *all);
  int rc = all ? 0 : -ENOMEM;
  for (int check = 1; rc == 0 && check <= 3; check++) {
    char target[4200];
    /* One target per node in local mode: the nodes' builders may share a filesystem. */
    if (local)
      snprintf(target, sizeof target, "%s/build_sync-local-%d-node%d.target", s->output_dir,
               check, l.node);
    else
      snprintf(target, sizeof target, "%s/build_sync-global-%d.target", s->output_dir, check);
    pass mine = {0};
    if ((rc = build_sync(s, group, target, &mine)) != 0 ||
        (rc = scn_allgather(s, s->world, &mine, all, sizeof mine, "gathering results")) != 0)
      break;
    if (check == 1)
      check_builders(s, &l, all, target);
    else if (check == 2)
      check_waited(s, all);
    else
      check_spread(s, all);
  }
  free(all);
  if (group != s->world) fg_comm_destroy(group);
  return rc;
}

/* --- single process: the file lock ----------------------------------------------------- */

/* Returns 1 if this call built the target, 0 if it found it built, < 0 on error. */
static int locked_build(scn *s, const char *target, const char *who) {
  struct stat before;
  int existed = stat(target, &before) == 0;
  char lock[4300];
  snprintf(lock, sizeof lock, "%s.build_lock", target);
  int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return -errno;
  while (flock(fd, LOCK_EX) != 0)
    if (errno != EINTR) {
      close(fd);
      return -errno;
    }
  struct stat now;
  int exists = stat(target, &now) == 0;
  int changed = exists && (!existed || now.st_mtim.tv_sec != before.st_mtim.tv_sec ||
                           now.st_mtim.tv_nsec != before.st_mtim.tv_nsec);
  int build = !changed || scn_fault(s, "rebuild");
  if (build) {
    sleep_s(BUILD_SECONDS);
    char text[128];
    snprintf(text, sizeof text, "built by %s\n", who);
    write_target(target, text);
  }
  unlink(lock);
  close(fd); /* releases the lock */
  return build;
}

static int run_lock_mode(scn *s) {
  char target[4200];
  snprintf(target, sizeof target, "%s/build_sync-lock.target", s->output_dir);
  scn_log(s, "single process: file-lock mode on %s.build_lock", target);
  int fds[2];
  if (pipe(fds) != 0) return -errno;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return -errno;
  if (pid == 0) { /* a second process after the same target */
    close(fds[0]);
    char built = (char)locked_build(s, target, "the second process");
    ssize_t ignored = write(fds[1], &built, 1);
    (void)ignored;
    _exit(0);
  }
  close(fds[1]);
  int mine = locked_build(s, target, "the first process");
  char theirs = -1;
  ssize_t got = read(fds[0], &theirs, 1);
  close(fds[0]);
  int status;
  waitpid(pid, &status, 0);
  if (mine < 0 || got != 1 || theirs < 0) {
    scn_error(s, "file-lock build failed: %s", mine < 0 ? strerror(-mine) : "second process");
    return -EIO;
  }
  scn_check(s, mine + theirs == 1, "exactly one of two processes built the target (%d built)",
            mine + theirs);
  struct stat st;
  char lock[4300];
  snprintf(lock, sizeof lock, "%s.build_lock", target);
  scn_check(s, stat(target, &st) == 0, "the target exists");
  scn_check(s, stat(lock, &st) != 0, "the lock file was removed");
  return 0;
}

static const char *const faults[] = {"two-builders", "no-wait", "straggler", "rebuild", NULL};

static int run_build_sync(scn *s, int argc, char **argv) {
  int local = 0;
  static const struct option opts[] = {{"local", no_argument, 0, 'l'}, {0, 0, 0, 0}};
  optind = 1;
  opterr = 0;
  int o;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (o == 'l')
      local = 1;
    else
      return scn_usage_error(s, "unknown option '%s' (see --help)", argv[optind - 1]);
  }
  if (optind < argc) return scn_usage_error(s, "unexpected argument '%s'", argv[optind]);
  if (s->size == 1) return run_lock_mode(s);
  return run_group_mode(s, local);
}

const scenario scn_build_sync = {
    .name = FG_SCENARIO_BUILD_SYNC,
    .summary = "one rank builds while the others wait, then all continue together",
    .usage = "options:\n"
             "  --local    one builder per node (rank 0 of each node's group, by LOCAL_WORLD_SIZE)\n"
             "\n"
             "Three passes, each on a fresh target in the output directory: the builder works\n"
             "0.5 s then joins its group's barrier, the others wait there, then a barrier for\n"
             "all. Checks: exactly one builder per group (per node with --local) and the target\n"
             "holds its text; no waiter let through earlier than 0.4 s after the common start;\n"
             "exit times spread under 100 ms.\n"
             "\n"
             "With one process there is no group: a file lock (<target>.build_lock) decides\n"
             "between two processes after the same target; the first builds, the second finds\n"
             "it built and does not; the lock file is removed after.\n"
             "\n"
             "Faults: two-builders (rank 1 of each group builds too), no-wait (waiters do not\n"
             "wait), straggler (the last rank leaves 0.3 s late), rebuild (one process: the\n"
             "second one builds again).\n",
    .faults = faults,
    .run = run_build_sync,
};

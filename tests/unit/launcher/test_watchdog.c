/* test_watchdog - the process that kills the workers' groups when fgrun goes (watchdog.c),
 * with this test as fgrun and sleeping process groups as the workers: the groups still
 * listed when the pipe closes are killed, children included, a group taken off the list is
 * not, a watchdog that dies is replaced with the whole list, and a process fg_spawn starts
 * lists its own group. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "launcher/spawn.h"
#include "launcher/watchdog.h"

static char err[256];
static pid_t groups[8];
static int ngroups;

/* A process group of its own (a worker): its leader and one child of the leader, both
 * asleep. *child gets the child's pid. Made before the watchdog starts: fgrun's workers
 * exec, which closes the pipe's write end in them, and these would keep it open. */
static pid_t sleeping_group(pid_t *child) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    setpgid(0, 0);
    pid_t c = fork();
    if (c == 0)
      for (;;) pause();
    if (write(fds[1], &c, sizeof c) != sizeof c) _exit(1);
    for (;;) pause();
  }
  setpgid(pid, pid); /* whichever of the two runs first */
  groups[ngroups++] = pid;
  assert_int_equal(read(fds[0], child, sizeof *child), sizeof *child);
  close(fds[0]);
  close(fds[1]);
  return pid;
}

/* 1 once pid was killed by SIGKILL (and is reaped), 0 if it still runs after `ms`. This
 * process is the subreaper, so the group's orphaned child is ours to reap too. */
static int killed_within(pid_t pid, int ms) {
  for (int waited = 0;; waited += 10) {
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
        fail_msg("pid %d ended with status %#x, not by SIGKILL", (int)pid, status);
      return 1;
    }
    if (r < 0 && errno != EINTR) fail_msg("waitpid(%d): %s", (int)pid, strerror(errno));
    if (waited >= ms) return 0;
    usleep(10000);
  }
}

static void kill_group(pid_t leader, pid_t child) {
  kill(-leader, SIGKILL);
  assert_true(killed_within(leader, 5000));
  assert_true(killed_within(child, 5000));
}

static int become_subreaper(void **state) {
  (void)state;
  return prctl(PR_SET_CHILD_SUBREAPER, 1) == 0 ? 0 : -1;
}

/* A failed case leaves no sleepers behind. Only a leader not reaped yet is signalled: the
 * pid of one reaped may belong to someone else by now. */
static int kill_leftovers(void **state) {
  (void)state;
  for (int i = 0; i < ngroups; i++)
    if (waitpid(groups[i], NULL, WNOHANG) == 0) kill(-groups[i], SIGKILL);
  ngroups = 0;
  return 0;
}

/* What a worker and fgrun do for each group: the worker writes its line before its exec
 * (spawn.h), fgrun keeps the group for a replacement watchdog. */
static void list_group(fg_watchdog *wd, pid_t pgid) {
  char line[24];
  int n = snprintf(line, sizeof line, "+%d\n", (int)pgid);
  assert_int_equal(write(fg_watchdog_fd(wd), line, (size_t)n), n);
  fg_watchdog_add(wd, pgid);
}

/* Runs the loop until the watchdog's handles are closed (its exit was seen, or the stop
 * gave up waiting for it). */
static void run_out(uv_loop_t *loop) { uv_run(loop, UV_RUN_DEFAULT); }

static void the_listed_groups_die_with_the_pipe(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  pid_t c1, c2, c3;
  pid_t g1 = sleeping_group(&c1), g2 = sleeping_group(&c2), g3 = sleeping_group(&c3);
  fg_watchdog wd;
  assert_int_equal(fg_watchdog_start(&wd, &loop, err, sizeof err), 0);
  assert_true(wd.running);
  list_group(&wd, g1);
  list_group(&wd, g2);
  list_group(&wd, g3);
  fg_watchdog_remove(&wd, g2); /* fgrun tore it down itself */
  assert_false(killed_within(g1, 100)); /* nothing happens while the pipe is open */
  fg_watchdog_stop(&wd);
  run_out(&loop);
  assert_false(wd.running);
  assert_int_equal(wd.exit_status, 0);
  assert_int_equal(wd.exit_signal, 0);
  assert_true(killed_within(g1, 5000));
  assert_true(killed_within(c1, 5000)); /* the worker's child too */
  assert_true(killed_within(g3, 5000));
  assert_true(killed_within(c3, 5000));
  assert_false(killed_within(g2, 100));
  kill_group(g2, c2);
  assert_int_equal(uv_loop_close(&loop), 0);
}

static void a_dead_watchdog_is_replaced_with_the_whole_list(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  pid_t c1, c2;
  pid_t g1 = sleeping_group(&c1), g2 = sleeping_group(&c2);
  fg_watchdog wd;
  assert_int_equal(fg_watchdog_start(&wd, &loop, err, sizeof err), 0);
  list_group(&wd, g1);
  list_group(&wd, g2);
  pid_t first = wd.child.pid;
  kill(first, SIGKILL);
  for (int i = 0; i < 500 && !(wd.respawns == 1 && wd.running); i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(10000);
  }
  assert_int_equal(wd.respawns, 1);
  assert_true(wd.running);
  assert_int_not_equal(wd.child.pid, first);
  assert_false(killed_within(g1, 100)); /* a killed watchdog kills nothing */
  fg_watchdog_stop(&wd);
  run_out(&loop);
  assert_true(killed_within(g1, 5000));
  assert_true(killed_within(c1, 5000));
  assert_true(killed_within(g2, 5000));
  assert_true(killed_within(c2, 5000));
  assert_int_equal(uv_loop_close(&loop), 0);
}

/* fg_spawn's child writes the line itself (fgrun, killed right after the clone returned,
 * would never write it): the watchdog kills a group that only the spawned process listed. */
static void a_spawned_worker_lists_its_own_group(void **state) {
  (void)state;
  uv_loop_t loop;
  uv_loop_init(&loop);
  fg_watchdog wd;
  assert_int_equal(fg_watchdog_start(&wd, &loop, err, sizeof err), 0);
  char *argv[] = {"sleep", "100", NULL}, *envp[] = {NULL};
  fg_spawn_opts o = {.file = "/bin/sleep", .argv = argv, .envp = envp, .fd = {0, 1, 2},
                     .no_pidfd = 1, .announce_fd = fg_watchdog_fd(&wd)};
  pid_t pid;
  int pidfd;
  assert_int_equal(fg_spawn(&o, &pid, &pidfd, err, sizeof err), 0);
  groups[ngroups++] = pid;
  fg_watchdog_stop(&wd); /* fgrun never called fg_watchdog_add */
  run_out(&loop);
  assert_true(killed_within(pid, 5000));
  assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(the_listed_groups_die_with_the_pipe, kill_leftovers),
      cmocka_unit_test_teardown(a_dead_watchdog_is_replaced_with_the_whole_list, kill_leftovers),
      cmocka_unit_test_teardown(a_spawned_worker_lists_its_own_group, kill_leftovers),
  };
  return cmocka_run_group_tests(tests, become_subreaper, NULL);
}

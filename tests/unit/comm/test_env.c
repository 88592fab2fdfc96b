/* test_env - who a rank is (comm/env.c): rank, world size, local rank and the store's address
 * from fgrun's and torchrun's variables, mpirun's and srun's, explicit options over all of
 * them, and every value it refuses, named with its variable. Each case starts from an
 * environment without any launcher's variables. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "comm/comm_internal.h"
#include "common/slurm.h"

extern char **environ;

static char err[512];

/* Unsets every variable env.c (or a launcher around this test) might have set. */
static int clean_env(void **state) {
  (void)state;
  static const char *const prefixes[] = {"RANK=", "WORLD_SIZE=", "LOCAL_", "GROUP_", "ROLE_",
                                         "OMPI_", "PMIX_", "SLURM", "MASTER_", "TORCHELASTIC_",
                                         "FG_TIMEOUT=", NULL};
  for (int again = 1; again;) {
    again = 0;
    for (char **e = environ; *e && !again; e++)
      for (const char *const *p = prefixes; *p; p++)
        if (strncmp(*e, *p, strlen(*p)) == 0) {
          char name[256];
          snprintf(name, sizeof name, "%.*s", (int)(strcspn(*e, "=")), *e);
          unsetenv(name);
          again = 1; /* environ changed under the walk */
          break;
        }
  }
  return 0;
}

static int resolve(fg_comm_env *env) {
  fg_comm_options o;
  fg_comm_options_init(&o);
  err[0] = '\0';
  return fg__comm_env_resolve(&o, env, err, sizeof err);
}

/* Sets each "NAME=VALUE" of a NULL-terminated list. */
static void set_vars(const char *var, ...) {
  va_list ap;
  va_start(ap, var);
  for (; var; var = va_arg(ap, const char *)) {
    const char *eq = strchr(var, '=');
    assert_non_null(eq);
    char name[256];
    snprintf(name, sizeof name, "%.*s", (int)(eq - var), var);
    setenv(name, eq + 1, 1);
  }
  va_end(ap);
}

/* Where resolve() placed this process: rank of size, local_rank of local_size on its node. */
static void expect_place(const fg_comm_env *env, int rank, int size, int local_rank,
                         int local_size) {
  if (env->rank != rank || env->size != size || env->local_rank != local_rank ||
      env->local_size != local_size)
    fail_msg("rank %d of %d, local rank %d of %d; expected rank %d of %d, local rank %d of %d",
             env->rank, env->size, env->local_rank, env->local_size, rank, size, local_rank,
             local_size);
}

static void expect_refused(const char *needle) {
  fg_comm_env env;
  int rc = resolve(&env);
  if (rc == 0 || !strstr(err, needle))
    fail_msg("expected an error containing '%s', got rc=%d err='%s'", needle, rc, err);
}

static void nothing_set_is_a_world_of_one(void **state) {
  (void)state;
  fg_comm_env env;
  assert_int_equal(resolve(&env), 0);
  assert_string_equal(env.launcher, "none");
  expect_place(&env, 0, 1, 0, 1);
  assert_string_equal(env.master_addr, "");
  assert_int_equal(env.master_port, 0);
  assert_false(env.agent_store);
  assert_false(env.mpi_launched);
  assert_int_equal(env.timeout_ms, 300000);
}

static void torchruns_variables_are_read(void **state) {
  (void)state;
  set_vars("RANK=3", "WORLD_SIZE=8", "LOCAL_RANK=1", "LOCAL_WORLD_SIZE=2", "MASTER_ADDR=node7",
           "MASTER_PORT=29501", "TORCHELASTIC_USE_AGENT_STORE=True",
           "TORCHELASTIC_RESTART_COUNT=2", "FG_TIMEOUT=2.5", NULL);
  fg_comm_env env;
  assert_int_equal(resolve(&env), 0);
  assert_string_equal(env.launcher, "fgrun/torchrun");
  expect_place(&env, 3, 8, 1, 2);
  assert_string_equal(env.master_addr, "node7");
  assert_int_equal(env.master_port, 29501);
  assert_true(env.agent_store);
  assert_int_equal(env.restart_count, 2);
  assert_int_equal(env.timeout_ms, 2500);

  /* without LOCAL_RANK a rank is its own local rank, and the world is one node */
  unsetenv("LOCAL_RANK");
  unsetenv("LOCAL_WORLD_SIZE");
  assert_int_equal(resolve(&env), 0);
  expect_place(&env, 3, 8, 3, 8);
}

static void options_win_over_the_environment(void **state) {
  (void)state;
  set_vars("RANK=3", "WORLD_SIZE=8", "MASTER_ADDR=node7", "MASTER_PORT=29501", "FG_TIMEOUT=60",
           NULL);
  fg_comm_options o;
  fg_comm_options_init(&o);
  o.rank = 1;
  o.world_size = 2;
  o.local_rank = 0;
  o.master_addr = "10.0.0.1";
  o.master_port = 4000;
  o.timeout_ms = 1234;
  fg_comm_env env;
  assert_int_equal(fg__comm_env_resolve(&o, &env, err, sizeof err), 0);
  assert_int_equal(env.rank, 1);
  assert_int_equal(env.size, 2);
  assert_int_equal(env.local_rank, 0);
  assert_string_equal(env.master_addr, "10.0.0.1");
  assert_int_equal(env.master_port, 4000);
  assert_int_equal(env.timeout_ms, 1234);
}

static void mpiruns_variables_are_read(void **state) {
  (void)state;
  set_vars("OMPI_COMM_WORLD_RANK=2", "OMPI_COMM_WORLD_SIZE=4", "OMPI_COMM_WORLD_LOCAL_RANK=0",
           "OMPI_COMM_WORLD_LOCAL_SIZE=2", NULL);
  fg_comm_env env;
  assert_int_equal(resolve(&env), 0);
  assert_string_equal(env.launcher, "mpirun");
  assert_true(env.mpi_launched);
  assert_false(env.srun);
  expect_place(&env, 2, 4, 0, 2);
  /* torchrun's win where both are set */
  set_vars("RANK=1", "WORLD_SIZE=4", NULL);
  assert_int_equal(resolve(&env), 0);
  assert_string_equal(env.launcher, "fgrun/torchrun");
  assert_int_equal(env.rank, 1);
  assert_false(env.mpi_launched);
}

static void sruns_variables_count_only_inside_a_step(void **state) {
  (void)state;
  set_vars("SLURM_PROCID=5", "SLURM_NTASKS=8", "SLURM_LOCALID=1", NULL);
  fg_comm_env env;
  assert_int_equal(resolve(&env), 0); /* a batch script sees the job's */
  assert_string_equal(env.launcher, "none");
  assert_int_equal(env.rank, 0);
  assert_int_equal(env.size, 1);

  set_vars("SLURM_STEP_ID=0", "SLURM_STEP_NUM_TASKS=6", "SLURM_STEP_TASKS_PER_NODE=2(x2),1,1",
           "SLURM_NODEID=2", "SLURM_STEP_NODELIST=gpu[03-05],cpu1", "SLURM_JOB_ID=123456", NULL);
  assert_int_equal(resolve(&env), 0);
  assert_string_equal(env.launcher, "srun");
  assert_true(env.srun);
  /* the step's 6 tasks, not the job's 8; node 2's entry of SLURM_STEP_TASKS_PER_NODE */
  expect_place(&env, 5, 6, 1, 1);
  assert_string_equal(env.master_addr, "gpu03");
  assert_int_equal(env.master_port, FG_SLURM_PORT_BASE + 123456 % FG_SLURM_PORT_SPAN);
  assert_non_null(strstr(env.store_origin, "gpu03 is the first node of SLURM_STEP_NODELIST"));
  assert_non_null(strstr(env.store_origin, "SLURM_JOB_ID=123456"));

  /* what the user set stays */
  set_vars("MASTER_ADDR=login1", "MASTER_PORT=7000", NULL);
  assert_int_equal(resolve(&env), 0);
  assert_string_equal(env.master_addr, "login1");
  assert_int_equal(env.master_port, 7000);
  assert_string_equal(env.store_origin, "");
}

static void bad_values_are_refused_with_their_variable(void **state) {
  (void)state;
  setenv("RANK", "0", 1);
  expect_refused("RANK is set but WORLD_SIZE is not");
  setenv("WORLD_SIZE", "many", 1);
  expect_refused("WORLD_SIZE=many is not a number of at least 1");
  setenv("WORLD_SIZE", "4", 1);
  setenv("RANK", "4", 1);
  expect_refused("rank 4 is not below the world size 4");
  setenv("RANK", "-1", 1);
  expect_refused("RANK=-1 is not a number of at least 0");
  setenv("RANK", "1", 1);
  setenv("MASTER_PORT", "70000", 1);
  expect_refused("MASTER_PORT=70000 is not a port");
  unsetenv("MASTER_PORT");
  setenv("TORCHELASTIC_RESTART_COUNT", "x", 1);
  expect_refused("TORCHELASTIC_RESTART_COUNT=x is not a count");
  unsetenv("TORCHELASTIC_RESTART_COUNT");
  setenv("FG_TIMEOUT", "0", 1);
  expect_refused("FG_TIMEOUT=0 is not a number of seconds");
  unsetenv("FG_TIMEOUT");

  /* under srun, a WORLD_SIZE from another launcher must agree with the step */
  unsetenv("RANK");
  set_vars("SLURM_STEP_ID=0", "SLURM_PROCID=1", "SLURM_STEP_NUM_TASKS=2", NULL);
  setenv("TORCHELASTIC_USE_AGENT_STORE", "True", 1); /* the store needs no node list */
  expect_refused("WORLD_SIZE=4 disagrees with the 2 tasks srun started");
  unsetenv("WORLD_SIZE");
  setenv("SLURM_STEP_TASKS_PER_NODE", "1(x2)", 1);
  setenv("SLURM_NODEID", "5", 1);
  expect_refused("SLURM_NODEID=5 is beyond SLURM_STEP_TASKS_PER_NODE=1(x2)");
  unsetenv("TORCHELASTIC_USE_AGENT_STORE");
  unsetenv("SLURM_NODEID");
  expect_refused("neither SLURM_STEP_NODELIST nor SLURM_JOB_NODELIST is set: set MASTER_ADDR");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(nothing_set_is_a_world_of_one, clean_env),
      cmocka_unit_test_setup(torchruns_variables_are_read, clean_env),
      cmocka_unit_test_setup(options_win_over_the_environment, clean_env),
      cmocka_unit_test_setup(mpiruns_variables_are_read, clean_env),
      cmocka_unit_test_setup(sruns_variables_count_only_inside_a_step, clean_env),
      cmocka_unit_test_setup(bad_values_are_refused_with_their_variable, clean_env),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

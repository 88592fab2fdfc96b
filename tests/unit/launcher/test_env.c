/* test_env - the workers' environment (launcher/env.c): torchrun's variables, overlays that
 * replace by name, and the job defaults that leave the user's values alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "launcher/env.h"

static const char *env_get(char **env, const char *name) {
  size_t n = strlen(name);
  const char *found = NULL;
  for (; *env; env++)
    if (strncmp(*env, name, n) == 0 && (*env)[n] == '=') {
      if (found) fail_msg("%s appears twice", name);
      found = *env + n + 1;
    }
  return found;
}

static void worker_env_is_torchruns(void **state) {
  (void)state;
  setenv("RANK", "stale", 1);
  setenv("FG_TEST_KEEP", "kept", 1);
  fg_env_spec s = {.role = "trainer", .nproc = 4, .node_rank = 0, .nnodes = 1,
                   .master_addr = "127.0.0.1", .master_port = 4321, .max_restarts = 3,
                   .run_id = "job7"};
  char **env = fg_worker_env(&s, 2, 1, "/run/attempt_1/2/error.json");
  assert_non_null(env);
  const char *want[][2] = {
      {"RANK", "2"}, {"LOCAL_RANK", "2"}, {"GROUP_RANK", "0"}, {"ROLE_RANK", "2"},
      {"ROLE_NAME", "trainer"}, {"LOCAL_WORLD_SIZE", "4"}, {"WORLD_SIZE", "4"},
      {"GROUP_WORLD_SIZE", "1"}, {"ROLE_WORLD_SIZE", "4"}, {"MASTER_ADDR", "127.0.0.1"},
      {"MASTER_PORT", "4321"}, {"TORCHELASTIC_RESTART_COUNT", "1"},
      {"TORCHELASTIC_MAX_RESTARTS", "3"}, {"TORCHELASTIC_RUN_ID", "job7"},
      {"TORCHELASTIC_USE_AGENT_STORE", "True"},
      {"TORCHELASTIC_ERROR_FILE", "/run/attempt_1/2/error.json"}, {"FG_TEST_KEEP", "kept"}};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    const char *v = env_get(env, want[i][0]);
    if (!v || strcmp(v, want[i][1]) != 0)
      fail_msg("%s: expected %s, got %s", want[i][0], want[i][1], v ? v : "(unset)");
  }
  free(env);
  unsetenv("RANK");
  unsetenv("FG_TEST_KEEP");
}

static void env_overlay_replaces_by_name_in_one_allocation(void **state) {
  (void)state;
  char *base[] = {"PATH=/bin", "PMIX_RANK=9", "PMIX_RANKS=x", "RANK=1", NULL};
  char *over[] = {"PMIX_RANK=0", "PMIX_NAMESPACE=ns", NULL};
  char **env = fg_env_overlay(base, over);
  assert_non_null(env);
  const char *want[] = {"PATH=/bin", "PMIX_RANKS=x", "RANK=1", "PMIX_RANK=0", "PMIX_NAMESPACE=ns"};
  size_t n = 0;
  for (; env[n]; n++) {
    assert_true(n < sizeof want / sizeof *want);
    assert_string_equal(env[n], want[n]);
    assert_ptr_not_equal(env[n], n < 3 ? base[n == 0 ? 0 : n + 1] : over[n - 3]); /* copies */
  }
  assert_int_equal(n, sizeof want / sizeof *want);
  free(env);
}

static void job_defaults_respect_the_users_values(void **state) {
  (void)state;
  unsetenv("OMP_NUM_THREADS");
  setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "0", 1);
  fg_env_set_job_defaults(1);
  assert_null(getenv("OMP_NUM_THREADS")); /* one worker: torchrun leaves it alone */
  fg_env_set_job_defaults(2);
  assert_string_equal(getenv("OMP_NUM_THREADS"), "1");
  assert_string_equal(getenv("TORCH_NCCL_ASYNC_ERROR_HANDLING"), "0");
  assert_string_equal(getenv("NCCL_ASYNC_ERROR_HANDLING"), "1");
  setenv("OMP_NUM_THREADS", "8", 1);
  fg_env_set_job_defaults(4);
  assert_string_equal(getenv("OMP_NUM_THREADS"), "8");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(worker_env_is_torchruns),
      cmocka_unit_test(env_overlay_replaces_by_name_in_one_allocation),
      cmocka_unit_test(job_defaults_respect_the_users_values),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_launcher_parts - the launcher's pure pieces: --tee maps, the prefix template, GPU
 * counting, torch's error file, the stderr tail, the worker environment and how PROGRAM
 * is turned into an argv. */
#include <setjmp.h>
#include <stdarg.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/buf.h"
#include "launcher/env.h"
#include "launcher/errorfile.h"
#include "launcher/nproc.h"
#include "launcher/options.h"
#include "launcher/output.h"
#include "launcher/program.h"
#include "launcher/rundir.h"

static char err[1024];

static void std_specs_follow_torchrun(void **state) {
  (void)state;
  fg_std_spec s = {0};
  assert_int_equal(fg_parse_std_spec("3", &s, err, sizeof err), 0);
  assert_int_equal(fg_std_for(&s, 0), FG_STD_ALL);
  assert_int_equal(fg_std_for(&s, 99), FG_STD_ALL);
  assert_int_equal(fg_parse_std_spec("0:1,2:2,12:3", &s, err, sizeof err), 0);
  assert_int_equal(fg_std_for(&s, 0), FG_STD_OUT);
  assert_int_equal(fg_std_for(&s, 1), FG_STD_NONE);
  assert_int_equal(fg_std_for(&s, 2), FG_STD_ERR);
  assert_int_equal(fg_std_for(&s, 12), FG_STD_ALL);
  const char *bad[] = {"", "4", "-1", "0:", ":1", "0:1,", "0:1;1:2", "a:1", "1:4", "stdout"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (fg_parse_std_spec(bad[i], &s, err, sizeof err) == 0) fail_msg("accepted '%s'", bad[i]);
  free(s.map);
}

static void nnodes_forms(void **state) {
  (void)state;
  int lo, hi;
  assert_int_equal(fg_parse_nnodes("1", &lo, &hi, err, sizeof err), 0);
  assert_true(lo == 1 && hi == 1);
  assert_int_equal(fg_parse_nnodes("2:8", &lo, &hi, err, sizeof err), 0);
  assert_true(lo == 2 && hi == 8);
  assert_int_not_equal(fg_parse_nnodes("3:2", &lo, &hi, err, sizeof err), 0);
  assert_int_not_equal(fg_parse_nnodes("1:2:3", &lo, &hi, err, sizeof err), 0);
  assert_int_not_equal(fg_parse_nnodes("", &lo, &hi, err, sizeof err), 0);
  assert_int_not_equal(fg_parse_nnodes("x", &lo, &hi, err, sizeof err), 0);
}

static void prefix_templates_expand(void **state) {
  (void)state;
  char *p = fg_expand_prefix("[rank${rank}]:", 3, 1, "trainer");
  assert_string_equal(p, "[rank3]:");
  free(p);
  p = fg_expand_prefix("${role_name}/${local_rank}|$rank $$ ", 12, 4, "trainer");
  assert_string_equal(p, "trainer/4|12 $ ");
  free(p);
  assert_int_equal(fg_check_prefix_template("${rank}-${local_rank}-${role_name}", err, sizeof err),
                   0);
  assert_int_not_equal(fg_check_prefix_template("${hostname}", err, sizeof err), 0);
  assert_int_not_equal(fg_check_prefix_template("${rank", err, sizeof err), 0);
  assert_int_not_equal(fg_check_prefix_template("cost: $5", err, sizeof err), 0);
}

static void make_file(const char *path) {
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  fclose(f);
}

static void gpus_are_counted_from_proc_or_dev(void **state) {
  (void)state;
  char root[] = "/tmp/fgrun-gpu-XXXXXX";
  assert_non_null(mkdtemp(root));
  char path[256];
  assert_int_equal(fg_gpu_count(root, NULL), 0);
  snprintf(path, sizeof path, "%s/dev", root);
  mkdir(path, 0755);
  const char *devs[] = {"nvidia0", "nvidia1", "nvidia2", "nvidiactl", "nvidia-uvm"};
  for (size_t i = 0; i < 5; i++) {
    snprintf(path, sizeof path, "%s/dev/%s", root, devs[i]);
    make_file(path);
  }
  assert_int_equal(fg_gpu_count(root, NULL), 3);
  assert_int_equal(fg_gpu_count(root, "1,2"), 2);
  assert_int_equal(fg_gpu_count(root, ""), 0);
  assert_int_equal(fg_gpu_count(root, "-1"), 0);
  assert_int_equal(fg_gpu_count(root, "0,7,1"), 1); /* CUDA stops at the first bad entry */
  assert_int_equal(fg_gpu_count(root, "0,0"), 1);
  assert_int_equal(fg_gpu_count(root, "GPU-abc,MIG-def"), 2);
  assert_int_equal(fg_gpu_count(root, "0,1,2,GPU-x"), 3); /* never more than exist */

  snprintf(path, sizeof path, "%s/proc/driver/nvidia/gpus", root);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "mkdir -p %s/0000:01:00.0 %s/0000:02:00.0", path, path);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(fg_gpu_count(root, NULL), 2);
  assert_int_equal(fg_remove_tree(root), 0);
}

static void torch_error_files_are_read(void **state) {
  (void)state;
  const char *torch =
      "{\"message\": {\"message\": \"ValueError: boom \\u00e9\\ud83d\\ude00\", \"extraInfo\": "
      "{\"py_callstack\": \"Traceback (most recent call last):\\n  File \\\"x.py\\\", line 3\\n"
      "ValueError: boom\\n\", \"timestamp\": \"1700000000\"}}}";
  fg_error_info info;
  assert_int_equal(fg_error_text_parse(torch, strlen(torch), &info), FG_ERRFILE_PARSED);
  assert_string_equal(info.message, "ValueError: boom \xc3\xa9\xf0\x9f\x98\x80");
  assert_non_null(strstr(info.callstack, "File \"x.py\", line 3\nValueError"));
  assert_string_equal(info.timestamp, "1700000000");
  fg_error_info_free(&info);

  const char *flat = "{\"errorCode\": 1, \"message\": \"plain text\"}";
  assert_int_equal(fg_error_text_parse(flat, strlen(flat), &info), FG_ERRFILE_PARSED);
  assert_string_equal(info.message, "plain text");
  assert_null(info.callstack);
  fg_error_info_free(&info);

  const char *bad[] = {"not json at all", "{\"message\": {\"message\": \"x\"}", "{\"other\": 1}",
                       "{\"message\": \"a\"} trailing", "[1, 2"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    assert_int_equal(fg_error_text_parse(bad[i], strlen(bad[i]), &info), FG_ERRFILE_RAW);
    assert_string_equal(info.raw, bad[i]);
    fg_error_info_free(&info);
  }
  assert_int_equal(fg_error_file_read("/nonexistent/error.json", &info), FG_ERRFILE_NONE);
}

static void the_tail_keeps_the_last_lines(void **state) {
  (void)state;
  fg_tail *t = calloc(1, sizeof *t);
  fg_buf out;
  fg__buf_init(&out);
  for (int i = 0; i < 5000; i++) {
    char line[32];
    int n = snprintf(line, sizeof line, "line %d\n", i);
    fg_tail_write(t, line, (size_t)n);
  }
  fg_tail_lines(t, 3, &out);
  assert_int_equal(out.len, strlen("line 4997\nline 4998\nline 4999"));
  assert_memory_equal(out.data, "line 4997\nline 4998\nline 4999", out.len);

  fg__buf_reset(&out);
  fg_tail_write(t, "partial", 7);
  fg_tail_lines(t, 2, &out);
  assert_memory_equal(out.data, "line 4999\npartial", out.len);

  /* more than the ring holds in one write */
  char *big = malloc(3 * FG_TAIL_BYTES);
  memset(big, 'x', 3 * FG_TAIL_BYTES);
  big[3 * FG_TAIL_BYTES - 1] = '\n';
  fg_tail_write(t, big, 3 * FG_TAIL_BYTES);
  fg__buf_reset(&out);
  fg_tail_lines(t, 20, &out);
  assert_int_equal(out.len, FG_TAIL_BYTES - 1);
  free(big);
  fg__buf_free(&out);
  free(t);
}

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

static int resolve(fg_program *p, const char *self_dir, int module, int no_python, int run_path,
                   const char *prog, int nargs, char **args) {
  fg_launch_opts o = {0};
  o.module = module;
  o.no_python = no_python;
  o.run_path = run_path;
  o.python = "/bin/sh"; /* any executable stands in for the interpreter */
  o.program = prog;
  o.program_args = args;
  o.nprogram_args = nargs;
  err[0] = '\0';
  return fg_program_resolve(&o, self_dir, p, err, sizeof err);
}

static void programs_resolve_like_torchrun(void **state) {
  (void)state;
  char dir[] = "/tmp/fgrun-prog-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char script[256], plain[256];
  snprintf(script, sizeof script, "%s/train.py", dir);
  snprintf(plain, sizeof plain, "%s/notes", dir);
  make_file(script);
  make_file(plain);
  char *args[] = {"--rank=${local_rank}", "x"};
  fg_program p;

  assert_int_equal(resolve(&p, dir, 0, 0, 0, script, 2, args), 0);
  assert_int_equal(p.argc, 5);
  assert_string_equal(p.argv[0], "/bin/sh");
  assert_string_equal(p.argv[1], "-u");
  assert_string_equal(p.argv[2], script);
  assert_true(p.uses_python);
  char **argv = fg_program_argv_for(&p, 3);
  assert_string_equal(argv[3], "--rank=3");
  assert_string_equal(p.argv[3], "--rank=${local_rank}");
  fg_program_argv_free(&p, argv);
  fg_program_free(&p);

  assert_int_equal(resolve(&p, dir, 1, 0, 0, "pkg.main", 0, NULL), 0);
  assert_string_equal(p.argv[2], "-m");
  assert_string_equal(p.argv[3], "pkg.main");
  fg_program_free(&p);

  assert_int_equal(resolve(&p, dir, 0, 0, 1, script, 0, NULL), 0);
  assert_string_equal(p.argv[2], "-c");
  assert_string_equal(p.argv[4], script);
  fg_program_free(&p);

  /* an executable runs directly, with or without --no_python */
  assert_int_equal(resolve(&p, dir, 0, 0, 0, "true", 0, NULL), 0);
  assert_false(p.uses_python);
  assert_non_null(strstr(p.path, "/true"));
  fg_program_free(&p);
  assert_int_equal(resolve(&p, dir, 0, 1, 0, "env", 0, NULL), 0);
  assert_non_null(strstr(p.path, "/env"));
  fg_program_free(&p);

  /* a file without the exec bit goes to Python */
  assert_int_equal(resolve(&p, dir, 0, 0, 0, plain, 0, NULL), 0);
  assert_true(p.uses_python);
  fg_program_free(&p);

  /* what does not exist fails before anything starts */
  assert_int_equal(resolve(&p, dir, 0, 0, 0, "/nope/train.py", 0, NULL), -ENOENT);
  assert_non_null(strstr(err, "not found"));
  assert_int_equal(resolve(&p, dir, 0, 1, 0, "no-such-program-xyz", 0, NULL), -ENOENT);
  assert_int_equal(resolve(&p, dir, 0, 1, 0, plain, 0, NULL), -ENOENT); /* not executable */
  assert_int_equal(resolve(&p, dir, 0, 0, 0, "no-such-program-xyz", 0, NULL), -ENOENT);

  /* scenarios need fgscenario next to fgrun */
  assert_int_equal(resolve(&p, dir, 0, 0, 0, "all", 0, NULL), -ENOENT);
  assert_non_null(strstr(err, "fgscenario"));
  char scn[300];
  snprintf(scn, sizeof scn, "%s/fgscenario", dir);
  make_file(scn);
  chmod(scn, 0755);
  assert_int_equal(resolve(&p, dir, 0, 0, 0, "pipeline-split", 1, args + 1), 0);
  assert_string_equal(p.argv[0], scn);
  assert_string_equal(p.argv[1], "pipeline-split");
  assert_string_equal(p.argv[2], "x");
  fg_program_free(&p);
  assert_int_equal(fg_remove_tree(dir), 0);
}

static void helpers_are_found_next_to_fgrun_or_in_libexec(void **state) {
  (void)state;
  char dir[] = "/tmp/fgrun-helper-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char bin[300], libexec[300], path[512], cmd[1200];
  snprintf(bin, sizeof bin, "%s/bin", dir);
  snprintf(libexec, sizeof libexec, "%s/libexec/fgrun", dir);
  snprintf(cmd, sizeof cmd, "mkdir -p %s %s && cp /bin/true %s/fgscenario", bin, libexec,
           libexec);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(fg_find_helper(bin, "fgscenario", path, sizeof path), 0);
  assert_non_null(strstr(path, "libexec/fgrun/fgscenario"));
  snprintf(cmd, sizeof cmd, "cp /bin/true %s/fgscenario", bin);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(fg_find_helper(bin, "fgscenario", path, sizeof path), 0);
  snprintf(cmd, sizeof cmd, "%s/fgscenario", bin);
  assert_string_equal(path, cmd);
  assert_int_equal(fg_find_helper(bin, "fgnothing", path, sizeof path), -ENOENT);
  assert_int_equal(fg_remove_tree(dir), 0);
}

static void run_dirs_never_clobber(void **state) {
  (void)state;
  char dir[] = "/tmp/fgrun-logs-XXXXXX";
  assert_non_null(mkdtemp(dir));
  char logdir[300];
  snprintf(logdir, sizeof logdir, "%s/deep/logs", dir);
  fg_rundir a, b, c;
  assert_int_equal(fg_rundir_create(&a, logdir, "job", 0, err, sizeof err), 0);
  assert_int_equal(fg_rundir_create(&b, logdir, "job", 0, err, sizeof err), 0);
  assert_int_equal(fg_rundir_create(&c, logdir, "a/b", 0, err, sizeof err), 0);
  char want[400];
  snprintf(want, sizeof want, "%s/job", logdir);
  assert_string_equal(a.path, want);
  snprintf(want, sizeof want, "%s/job.1", logdir);
  assert_string_equal(b.path, want);
  snprintf(want, sizeof want, "%s/a_b", logdir);
  assert_string_equal(c.path, want);
  assert_int_equal(fg_rundir_make_attempt(&a, 0, 3, err, sizeof err), 0);
  char *f = fg_rundir_file(&a, 0, 2, "error.json");
  snprintf(want, sizeof want, "%s/job/attempt_0/2/error.json", logdir);
  assert_string_equal(f, want);
  make_file(f);
  free(f);
  fg_rundir_finish(&a);
  fg_rundir_finish(&b);
  fg_rundir_finish(&c);
  snprintf(want, sizeof want, "%s/job/attempt_0/2/error.json", logdir);
  assert_int_equal(access(want, F_OK), 0); /* --log_dir runs stay */

  fg_rundir t;
  assert_int_equal(fg_rundir_create(&t, NULL, "none", 0, err, sizeof err), 0);
  char *kept = strdup(t.path);
  fg_rundir_finish(&t);
  assert_int_not_equal(access(kept, F_OK), 0); /* a private one goes */
  free(kept);
  assert_int_equal(fg_remove_tree(dir), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(std_specs_follow_torchrun),
      cmocka_unit_test(nnodes_forms),
      cmocka_unit_test(prefix_templates_expand),
      cmocka_unit_test(gpus_are_counted_from_proc_or_dev),
      cmocka_unit_test(torch_error_files_are_read),
      cmocka_unit_test(the_tail_keeps_the_last_lines),
      cmocka_unit_test(worker_env_is_torchruns),
      cmocka_unit_test(env_overlay_replaces_by_name_in_one_allocation),
      cmocka_unit_test(job_defaults_respect_the_users_values),
      cmocka_unit_test(programs_resolve_like_torchrun),
      cmocka_unit_test(helpers_are_found_next_to_fgrun_or_in_libexec),
      cmocka_unit_test(run_dirs_never_clobber),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

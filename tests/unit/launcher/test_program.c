/* test_program - how PROGRAM becomes an argv (program.c): a script, a module, --run_path, an
 * executable, what does not exist, the scenarios, and where fgrun's helpers are found. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "launcher/options.h"
#include "launcher/program.h"
#include "launcher/rundir.h"
#include "../unit_util.h"

static char err[1024];

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
  write_file(script, "");
  write_file(plain, "");
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
  write_file(scn, "");
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(programs_resolve_like_torchrun),
      cmocka_unit_test(helpers_are_found_next_to_fgrun_or_in_libexec),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_options - fgrun's command line (options.c, options_check.c): spellings, PET_
 * variables, defaults, the rules that tie options together (the multi-node ones follow
 * torchrun) and every rejection, which must name the option at fault. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "launcher/options.h"
#include "parse_opts.h"

static void clear_pet(void) {
  static const char *vars[] = {"PET_NPROC_PER_NODE", "PET_STANDALONE", "PET_MAX_RESTARTS",
                               "PET_TEE", "PET_NNODES", "PET_MASTER_PORT", "PET_NO_PYTHON"};
  for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) unsetenv(vars[i]);
}

static void defaults_are_torchrun_1_13s(void **state) {
  (void)state;
  clear_pet();
  fg_launch_opts o;
  assert_int_equal(parse(&o, "train.py", NULL), 0);
  assert_int_equal(o.nnodes_min, 1);
  assert_int_equal(o.nnodes_max, 1);
  assert_int_equal(o.nproc_kind, FG_NPROC_NUMBER);
  assert_int_equal(o.nproc, 1);
  assert_int_equal(o.node_rank, 0);
  assert_string_equal(o.rdzv_backend, "static");
  assert_string_equal(o.rdzv_id, "none");
  assert_null(o.rdzv_endpoint);
  assert_string_equal(o.master_addr, "127.0.0.1");
  assert_int_equal(o.master_port, 29500);
  assert_string_equal(o.store_host, "127.0.0.1");
  assert_int_equal(o.store_port, 29500);
  assert_int_equal(o.max_restarts, 0);
  assert_true(o.monitor_interval == 5.0);
  assert_true(o.term_grace == 30.0);
  assert_string_equal(o.start_method, "spawn");
  assert_string_equal(o.role, "default");
  assert_null(o.log_dir);
  assert_int_equal(o.redirects.all, 0);
  assert_int_equal(o.tee.all, 0);
  assert_string_equal(o.prefix_template, "[rank${rank}]:");
  assert_int_equal(o.nsignals, 4);
  assert_int_equal(o.signals[0], SIGTERM);
  assert_int_equal(o.signals[1], SIGINT);
  assert_int_equal(o.signals[2], SIGHUP);
  assert_int_equal(o.signals[3], SIGQUIT);
  assert_string_equal(o.program, "train.py");
  assert_int_equal(o.nprogram_args, 0);
  fg_opts_free(&o);
}

static void both_spellings_and_both_value_forms(void **state) {
  (void)state;
  clear_pet();
  const char *forms[][2] = {{"--nproc_per_node=3", NULL},
                            {"--nproc-per-node=3", NULL},
                            {"--nproc_per_node", "3"},
                            {"--nproc-per-node", "3"},
                            {"--nproc", "3"}}; /* an unambiguous prefix, as argparse allows */
  for (size_t i = 0; i < sizeof forms / sizeof *forms; i++) {
    fg_launch_opts o;
    int rc = forms[i][1] ? parse(&o, forms[i][0], forms[i][1], "x.py", NULL)
                         : parse(&o, forms[i][0], "x.py", NULL);
    if (rc != 0) fail_msg("%s: %s", forms[i][0], err);
    assert_int_equal(o.nproc, 3);
    fg_opts_free(&o);
  }
}

static void arguments_after_the_program_belong_to_it(void **state) {
  (void)state;
  clear_pet();
  fg_launch_opts o;
  assert_int_equal(parse(&o, "--max-restarts", "2", "prog", "--nproc_per_node", "7", "-m",
                         NULL), 0);
  assert_int_equal(o.max_restarts, 2);
  assert_int_equal(o.nproc, 1);
  assert_int_equal(o.module, 0);
  assert_string_equal(o.program, "prog");
  assert_int_equal(o.nprogram_args, 3);
  assert_string_equal(o.program_args[0], "--nproc_per_node");
  fg_opts_free(&o);

  assert_int_equal(parse(&o, "--", "-weird-name", "a", NULL), 0);
  assert_string_equal(o.program, "-weird-name");
  assert_int_equal(o.nprogram_args, 1);
  fg_opts_free(&o);
}

static void short_options(void **state) {
  (void)state;
  clear_pet();
  fg_launch_opts o;
  assert_int_equal(parse(&o, "-m", "-r3", "-t", "0:1,1:3", "pkg.mod", NULL), 0);
  assert_int_equal(o.module, 1);
  assert_int_equal(o.redirects.all, 3);
  assert_int_equal(o.tee.nmap, 2);
  assert_int_equal(fg_std_for(&o.tee, 0), FG_STD_OUT);
  assert_int_equal(fg_std_for(&o.tee, 1), FG_STD_ALL);
  assert_int_equal(fg_std_for(&o.tee, 2), FG_STD_NONE);
  fg_opts_free(&o);
  assert_int_equal(parse(&o, "-r=2", "x", NULL), 0);
  assert_int_equal(o.redirects.all, 2);
  fg_opts_free(&o);
}

static void pet_variables_fill_unset_options(void **state) {
  (void)state;
  clear_pet();
  setenv("PET_NPROC_PER_NODE", "6", 1);
  setenv("PET_MAX_RESTARTS", "4", 1);
  setenv("PET_STANDALONE", "1", 1);
  fg_launch_opts o;
  assert_int_equal(parse(&o, "--max_restarts=1", "x.py", NULL), 0);
  assert_int_equal(o.nproc, 6);
  assert_int_equal(o.max_restarts, 1); /* the command line wins */
  assert_int_equal(o.standalone, 1);
  fg_opts_free(&o);

  setenv("PET_NPROC_PER_NODE", "zero", 1);
  expect_error("PET_NPROC_PER_NODE", parse(&o, "x.py", NULL), &o);
  setenv("PET_NPROC_PER_NODE", "2", 1);
  setenv("PET_STANDALONE", "maybe", 1);
  expect_error("PET_STANDALONE", parse(&o, "x.py", NULL), &o);
  clear_pet();
}

static void standalone_picks_a_private_store_and_a_fresh_id(void **state) {
  (void)state;
  clear_pet();
  fg_launch_opts a, b;
  assert_int_equal(parse(&a, "--standalone", "--master_port=1234", "--rdzv_id=mine", "x", NULL),
                   0);
  assert_int_equal(parse(&b, "--standalone", "x", NULL), 0);
  assert_string_equal(a.rdzv_backend, "c10d");
  assert_string_equal(a.store_host, "127.0.0.1");
  assert_int_equal(a.store_port, 0);
  assert_int_equal(strlen(a.rdzv_id), 36);
  assert_int_equal(a.rdzv_id[14], '4');
  assert_string_not_equal(a.rdzv_id, b.rdzv_id);
  fg_opts_free(&a);
  fg_opts_free(&b);
}

static void the_store_address_follows_the_backend(void **state) {
  (void)state;
  clear_pet();
  fg_launch_opts o;
  assert_int_equal(parse(&o, "--rdzv_backend=c10d", "--rdzv_endpoint=localhost", "x", NULL), 0);
  assert_string_equal(o.store_host, "localhost");
  assert_int_equal(o.store_port, 29400);
  fg_opts_free(&o);
  assert_int_equal(parse(&o, "--rdzv_backend=c10d", "--rdzv_endpoint=[::1]:5000", "x", NULL), 0);
  assert_string_equal(o.store_host, "::1");
  assert_int_equal(o.store_port, 5000);
  fg_opts_free(&o);
  assert_int_equal(parse(&o, "--master_addr=10.0.0.1", "--master_port=4000", "x", NULL), 0);
  assert_string_equal(o.store_host, "10.0.0.1");
  assert_int_equal(o.store_port, 4000);
  fg_opts_free(&o);
  expect_error("--rdzv_endpoint", parse(&o, "--rdzv_backend=c10d", "x", NULL), &o);
}

static void nproc_words_and_numbers(void **state) {
  (void)state;
  clear_pet();
  const struct {
    const char *arg;
    enum fg_nproc_kind kind;
  } cases[] = {{"auto", FG_NPROC_AUTO}, {"cpu", FG_NPROC_CPU}, {"gpu", FG_NPROC_GPU},
               {"64", FG_NPROC_NUMBER}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    fg_launch_opts o;
    assert_int_equal(parse(&o, "--nproc_per_node", cases[i].arg, "x", NULL), 0);
    assert_int_equal(o.nproc_kind, cases[i].kind);
    fg_opts_free(&o);
  }
}

static void rdzv_conf_is_checked(void **state) {
  (void)state;
  clear_pet();
  fg_launch_opts o;
  assert_int_equal(parse(&o, "--rdzv_conf=timeout=60,join_timeout=5", "x", NULL), 0);
  assert_int_equal(o.nrdzv_conf, 2);
  assert_string_equal(o.rdzv_conf[1].key, "join_timeout");
  assert_string_equal(o.rdzv_conf[1].value, "5");
  fg_opts_free(&o);
  expect_error("--rdzv_conf", parse(&o, "--rdzv_conf=timeout", "x", NULL), &o);
  expect_error("--rdzv_conf", parse(&o, "--rdzv_conf==5", "x", NULL), &o);
  expect_error("--rdzv_conf", parse(&o, "--rdzv_conf=a=1,", "x", NULL), &o);
}

static void bad_input_is_rejected_with_the_option_named(void **state) {
  (void)state;
  clear_pet();
  fg_launch_opts o;
  expect_error("unknown option --bogus", parse(&o, "--bogus", "x", NULL), &o);
  expect_error("unknown option -z", parse(&o, "-z", "x", NULL), &o);
  expect_error("--nproc_per_node", parse(&o, "--nproc_per_node", "0", "x", NULL), &o);
  expect_error("--nproc_per_node", parse(&o, "--nproc_per_node=many", "x", NULL), &o);
  expect_error("MIN (3) is larger than MAX (2)", parse(&o, "--nnodes", "3:2", "x", NULL), &o);
  expect_error("give each node its --node_rank", parse(&o, "--nnodes=2", "x", NULL), &o);
  expect_error("needs a fixed number of nodes", parse(&o, "--nnodes=1:4", "x", NULL), &o);
  expect_error("--nnodes", parse(&o, "--nnodes=0", "x", NULL), &o);
  expect_error("--node_rank", parse(&o, "--node_rank=1", "x", NULL), &o);
  expect_error("--tee", parse(&o, "--tee=4", "x", NULL), &o);
  expect_error("--tee", parse(&o, "--tee=0:5", "x", NULL), &o);
  expect_error("--redirects", parse(&o, "-r", "x:1", "x", NULL), &o);
  expect_error("--master_port", parse(&o, "--master_port=70000", "x", NULL), &o);
  expect_error("--max_restarts", parse(&o, "--max_restarts=-1", "x", NULL), &o);
  expect_error("--monitor_interval", parse(&o, "--monitor_interval=0", "x", NULL), &o);
  expect_error("--start_method", parse(&o, "--start_method=thread", "x", NULL), &o);
  expect_error("--rdzv_backend", parse(&o, "--rdzv_backend=etcd", "x", NULL), &o);
  expect_error("--term_grace", parse(&o, "--term_grace=soon", "x", NULL), &o);
  expect_error("--signals_to_handle", parse(&o, "--signals_to_handle=SIGNOPE", "x", NULL), &o);
  expect_error("SIGKILL cannot be handled", parse(&o, "--signals_to_handle=KILL", "x", NULL),
               &o);
  expect_error("--local_ranks_filter", parse(&o, "--local_ranks_filter=0,a", "x", NULL), &o);
  expect_error("--log_line_prefix_template",
               parse(&o, "--log_line_prefix_template=${host}", "x", NULL), &o);
  expect_error("--no_python and --module", parse(&o, "--no_python", "-m", "x", NULL), &o);
  expect_error("--standalone takes no value", parse(&o, "--standalone=1", "x", NULL), &o);
  expect_error("--master_port needs a value", parse(&o, "--master_port", NULL), &o);
  expect_error("--log_dir needs a value", parse(&o, "--log_dir", "--tee=3", "x", NULL), &o);
  expect_error("missing PROGRAM", parse(&o, "--standalone", NULL), &o);
  expect_error("ambiguous option --no", parse(&o, "--no", "x", NULL), &o);
}

static void help_and_version_need_no_program(void **state) {
  (void)state;
  clear_pet();
  fg_launch_opts o;
  assert_int_equal(parse(&o, "--help", NULL), 0);
  assert_true(o.show_help);
  fg_opts_free(&o);
  assert_int_equal(parse(&o, "-h", NULL), 0);
  assert_true(o.show_help);
  fg_opts_free(&o);
  assert_int_equal(parse(&o, "--version", NULL), 0);
  assert_true(o.show_version);
  fg_opts_free(&o);
}

static void signals_parse_in_any_spelling(void **state) {
  (void)state;
  clear_pet();
  fg_launch_opts o;
  assert_int_equal(parse(&o, "--signals_to_handle=SIGUSR1, TERM,2,SIGTERM", "x", NULL), 0);
  assert_int_equal(o.nsignals, 3);
  assert_int_equal(o.signals[0], SIGUSR1);
  assert_int_equal(o.signals[1], SIGTERM);
  assert_int_equal(o.signals[2], SIGINT);
  fg_opts_free(&o);
}

static void multinode_options_follow_torchrun(void **state) {
  (void)state;
  unsetenv("PET_NODE_RANK");
  fg_launch_opts o;
  assert_int_equal(parse(&o, "--nnodes=2", "--node_rank=1", "--master_addr=10.0.0.1", "x",
                         NULL), 0);
  assert_int_equal(o.nnodes_max, 2);
  assert_int_equal(o.node_rank, 1);
  assert_string_equal(o.store_host, "10.0.0.1");
  assert_string_equal(o.prefix_template, "[node${group_rank} rank${rank}]:");
  fg_opts_free(&o);
  setenv("PET_NODE_RANK", "0", 1); /* an environment variable gives it too */
  assert_int_equal(parse(&o, "--nnodes=2", "x", NULL), 0);
  fg_opts_free(&o);
  unsetenv("PET_NODE_RANK");
  assert_int_equal(parse(&o, "--rdzv_backend=c10d", "--rdzv_endpoint=h:1", "--nnodes=1:4", "x",
                         NULL), 0);
  assert_int_equal(o.nnodes_min, 1);
  assert_int_equal(o.nnodes_max, 4);
  fg_opts_free(&o);
  assert_int_equal(parse(&o, "--nnodes=2", "--node_rank=0", "--log_line_prefix_template=<$rank>",
                         "x", NULL), 0);
  assert_string_equal(o.prefix_template, "<$rank>"); /* the user's template stays */
  fg_opts_free(&o);
  expect_error("give each node its --node_rank (0 to 2)", parse(&o, "--nnodes=3", "x", NULL), &o);
  expect_error("--node_rank 3: must be below --nnodes (3)",
               parse(&o, "--nnodes=3", "--node_rank=3", "x", NULL), &o);
  expect_error("static rendezvous needs a fixed number",
               parse(&o, "--nnodes=2:3", "--node_rank=0", "x", NULL), &o);
  expect_error("--standalone runs one node", parse(&o, "--standalone", "--nnodes=2", "x", NULL),
               &o);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(defaults_are_torchrun_1_13s),
      cmocka_unit_test(both_spellings_and_both_value_forms),
      cmocka_unit_test(arguments_after_the_program_belong_to_it),
      cmocka_unit_test(short_options),
      cmocka_unit_test(pet_variables_fill_unset_options),
      cmocka_unit_test(standalone_picks_a_private_store_and_a_fresh_id),
      cmocka_unit_test(the_store_address_follows_the_backend),
      cmocka_unit_test(nproc_words_and_numbers),
      cmocka_unit_test(rdzv_conf_is_checked),
      cmocka_unit_test(bad_input_is_rejected_with_the_option_named),
      cmocka_unit_test(help_and_version_need_no_program),
      cmocka_unit_test(signals_parse_in_any_spelling),
      cmocka_unit_test(multinode_options_follow_torchrun),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_numa - --numa_binding's plans on a /sys laid out like a two-socket-node machine with
 * SMT (this machine has one NUMA node: the integration tests bind real workers on it). */
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

#include "common/util.h"
#include "launcher/numa.h"
#include "launcher/rundir.h"
#include "../unit_util.h"

static char root[] = "/tmp/fgrun-numa-XXXXXX";
static char err[512];

/* Writes text to root/rel, making the directories on the way. */
static void put(const char *rel, const char *text) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", root, rel);
  for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')) != NULL; p++) {
    *p = '\0';
    mkdir(path, 0755);
    *p = '/';
  }
  write_file(path, text);
}

/* Nodes 0 and 1 in package 0: node 0 has CPUs 0-3 (cores {0,2} and {1,3}, one L3), node 1
 * CPUs 4-7 (cores {4,6} and {5,7}, each core its own L3). Node 2, package 1: CPUs 8-10, a
 * core each, one L3. The cases that leave 8-10 out of fgrun's CPUs see two nodes. */
static int make_tree(void **state) {
  (void)state;
  assert_non_null(mkdtemp(root));
  put("sys/devices/system/node/node0/cpulist", "0-3\n");
  put("sys/devices/system/node/node1/cpulist", "4-7\n");
  put("sys/devices/system/node/node2/cpulist", "8-10\n");
  put("sys/devices/system/node/possible", "0-2\n");
  for (int c = 0; c < 11; c++) {
    char rel[128], text[32];
    snprintf(rel, sizeof rel, "sys/devices/system/cpu/cpu%d/topology/thread_siblings_list", c);
    if (c < 8)
      snprintf(text, sizeof text, "%d,%d\n", c & ~2, (c & ~2) + 2);
    else
      snprintf(text, sizeof text, "%d\n", c);
    put(rel, text);
    snprintf(rel, sizeof rel, "sys/devices/system/cpu/cpu%d/topology/physical_package_id", c);
    put(rel, c < 8 ? "0\n" : "1\n");
    const char *caches[][3] = {{"Data", "1", NULL}, {"Instruction", "1", NULL},
                               {"Unified", "3", NULL}};
    for (int i = 0; i < 3; i++) {
      char shared[32];
      if (i == 2)
        snprintf(shared, sizeof shared, c < 4 ? "0-3\n" : c < 8 ? "%d,%d\n" : "8-10\n", c & ~2,
                 (c & ~2) + 2);
      else
        snprintf(shared, sizeof shared, "%d\n", c);
      snprintf(rel, sizeof rel, "sys/devices/system/cpu/cpu%d/cache/index%d/type", c, i);
      put(rel, caches[i][0]);
      snprintf(rel, sizeof rel, "sys/devices/system/cpu/cpu%d/cache/index%d/level", c, i);
      put(rel, caches[i][1]);
      snprintf(rel, sizeof rel, "sys/devices/system/cpu/cpu%d/cache/index%d/shared_cpu_list", c,
               i);
      put(rel, shared);
    }
  }
  return 0;
}

static int remove_tree(void **state) {
  (void)state;
  return fg_remove_tree(root);
}

static void cpus_of(enum fg_numa_mode mode, int nproc, const char *allowed_list,
                    const char *const *want) {
  cpu_set_t allowed, cpus[8];
  CPU_ZERO(&allowed);
  for (int c = 0; c < 11; c++) /* CPU 10 is 'a' */
    if (strchr(allowed_list, c < 10 ? '0' + c : 'a')) CPU_SET(c, &allowed);
  assert_int_equal(fg_numa_plan(mode, nproc, root, &allowed, cpus, err, sizeof err), 0);
  for (int i = 0; i < nproc; i++) {
    char list[64];
    fg_numa_format(&cpus[i], list, sizeof list);
    if (strcmp(list, want[i]) != 0)
      fail_msg("%s, local rank %d: got %s, expected %s", fg_numa_mode_name(mode), i, list,
               want[i]);
  }
}

static void cpu_workers_share_the_nodes_out_in_blocks(void **state) {
  (void)state;
  const char *all = "01234567";
  cpus_of(FG_NUMA_NODE, 4, all, (const char *[]){"0-3", "0-3", "4-7", "4-7"});
  cpus_of(FG_NUMA_SOCKET, 4, all, (const char *[]){"0-7", "0-7", "0-7", "0-7"});
  /* a core is both its hardware threads; the node's cores are split between its workers */
  cpus_of(FG_NUMA_EXCLUSIVE, 4, all, (const char *[]){"0,2", "1,3", "4,6", "5,7"});
  cpus_of(FG_NUMA_EXCLUSIVE, 2, all, (const char *[]){"0-3", "4-7"});
  /* node 0 is one L3 for both its workers; node 1 has one per core */
  cpus_of(FG_NUMA_CORE_COMPLEX, 4, all, (const char *[]){"0-3", "0-3", "4,6", "5,7"});
  /* three workers on two nodes: the first two share node 0 */
  cpus_of(FG_NUMA_NODE, 3, all, (const char *[]){"0-3", "0-3", "4-7"});
}

static void only_cpus_fgrun_may_use_are_given(void **state) {
  (void)state;
  cpus_of(FG_NUMA_NODE, 2, "0123456", (const char *[]){"0-3", "4-6"});
  cpus_of(FG_NUMA_EXCLUSIVE, 4, "0123456", (const char *[]){"0,2", "1,3", "4,6", "5"});
  cpus_of(FG_NUMA_EXCLUSIVE, 3, "013456", (const char *[]){"0", "1,3", "4-6"});
  /* a node with no allowed CPU is skipped: every worker goes to the other */
  cpus_of(FG_NUMA_EXCLUSIVE, 2, "4567", (const char *[]){"4,6", "5,7"});
  cpus_of(FG_NUMA_EXCLUSIVE, 3, "01234567", (const char *[]){"0,2", "1,3", "4-7"});
}

static void a_third_node_on_its_own_socket(void **state) {
  (void)state;
  const char *all = "0123456789a";
  cpus_of(FG_NUMA_SOCKET, 3, all, (const char *[]){"0-7", "0-7", "8-10"});
  cpus_of(FG_NUMA_NODE, 3, all, (const char *[]){"0-3", "4-7", "8-10"});
  /* three cores for two workers: the lower local rank gets the extra one */
  cpus_of(FG_NUMA_EXCLUSIVE, 2, "89a", (const char *[]){"8-9", "10"});
  cpus_of(FG_NUMA_EXCLUSIVE, 3, "89a", (const char *[]){"8", "9", "10"});
  cpus_of(FG_NUMA_CORE_COMPLEX, 2, "89a", (const char *[]){"8-10", "8-10"});
}

static void exclusive_needs_a_core_per_worker(void **state) {
  (void)state;
  cpu_set_t allowed, cpus[6];
  CPU_ZERO(&allowed);
  for (int c = 0; c < 8; c++) CPU_SET(c, &allowed);
  assert_int_equal(fg_numa_plan(FG_NUMA_EXCLUSIVE, 6, root, &allowed, cpus, err, sizeof err),
                   -EINVAL);
  assert_non_null(strstr(err, "NUMA node 0 has 2 physical cores fgrun may use, for 3 workers"));
  assert_int_equal(fg_numa_plan(FG_NUMA_NODE, 6, root, &allowed, cpus, err, sizeof err), 0);
}

static void gpu_workers_go_to_their_gpus_node(void **state) {
  (void)state;
  /* PCI order: 0000:01 (node 0) is GPU 0, 0000:81 (node 1) GPU 1, 0000:c1 (-1: node 0) 2 */
  put("proc/driver/nvidia/gpus/0000:81:00.0/information", "");
  put("proc/driver/nvidia/gpus/0000:01:00.0/information", "");
  put("proc/driver/nvidia/gpus/0000:c1:00.0/information", "");
  put("sys/bus/pci/devices/0000:81:00.0/numa_node", "1\n");
  put("sys/bus/pci/devices/0000:01:00.0/numa_node", "0\n");
  put("sys/bus/pci/devices/0000:c1:00.0/numa_node", "-1\n");
  const char *all = "01234567";
  cpus_of(FG_NUMA_NODE, 3, all, (const char *[]){"0-3", "4-7", "0-3"});
  cpus_of(FG_NUMA_EXCLUSIVE, 3, all, (const char *[]){"0,2", "4-7", "1,3"});
  /* more workers than GPUs: the CPU way */
  cpus_of(FG_NUMA_NODE, 4, all, (const char *[]){"0-3", "0-3", "4-7", "4-7"});
}

static void modes_parse_and_lists_format(void **state) {
  (void)state;
  enum fg_numa_mode m;
  assert_int_equal(fg_numa_parse_mode("core-complex", &m, err, sizeof err), 0);
  assert_int_equal(m, FG_NUMA_CORE_COMPLEX);
  assert_int_equal(fg_numa_parse_mode("off", &m, err, sizeof err), -EINVAL);
  assert_non_null(strstr(err, "expected node, socket, exclusive or core-complex, got 'off'"));
  cpu_set_t s;
  CPU_ZERO(&s);
  char list[64];
  fg_numa_format(&s, list, sizeof list);
  assert_string_equal(list, "");
  int cpus[] = {0, 1, 2, 3, 5, 9, 10};
  for (size_t i = 0; i < FG_ARRAY_LEN(cpus); i++) CPU_SET(cpus[i], &s);
  fg_numa_format(&s, list, sizeof list);
  assert_string_equal(list, "0-3,5,9-10");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(cpu_workers_share_the_nodes_out_in_blocks),
      cmocka_unit_test(only_cpus_fgrun_may_use_are_given),
      cmocka_unit_test(a_third_node_on_its_own_socket),
      cmocka_unit_test(exclusive_needs_a_core_per_worker),
      cmocka_unit_test(gpu_workers_go_to_their_gpus_node),
      cmocka_unit_test(modes_parse_and_lists_format),
  };
  return cmocka_run_group_tests(tests, make_tree, remove_tree);
}

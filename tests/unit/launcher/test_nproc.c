/* test_nproc - counting GPUs (nproc.c) from a fake root's /proc/driver/nvidia or /dev, and
 * CUDA_VISIBLE_DEVICES read as CUDA reads it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "launcher/nproc.h"
#include "launcher/rundir.h"
#include "../unit_util.h"

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
    write_file(path, "");
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(gpus_are_counted_from_proc_or_dev),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_procinfo - /proc read for processes in known states (procinfo.c): running, stopped by
 * a signal, a zombie, gone; and how states are named and ranked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "launcher/procinfo.h"

static void proc_states_of_real_processes(void **state) {
  (void)state;
  fg_proc_info p;
  assert_int_equal(fg_proc_read(getpid(), &p), 0);
  assert_true(p.ok && p.state == 'R');
  pid_t child = fork();
  if (child == 0) {
    raise(SIGSTOP);
    _exit(0);
  }
  siginfo_t si;
  assert_int_equal(waitid(P_PID, (id_t)child, &si, WSTOPPED | WNOWAIT), 0);
  assert_int_equal(fg_proc_read(child, &p), 0);
  assert_int_equal(p.state, 'T');
  assert_int_equal(p.stop_signal, SIGSTOP);
  kill(child, SIGCONT);
  kill(child, SIGKILL);
  waitid(P_PID, (id_t)child, &si, WEXITED | WNOWAIT);
  assert_int_equal(fg_proc_read(child, &p), 0);
  assert_int_equal(p.state, 'Z');
  waitpid(child, NULL, 0);
  assert_int_not_equal(fg_proc_read(child, &p), 0);
  assert_false(p.ok);
  assert_string_equal(fg_proc_state_name('D'), "in uninterruptible sleep (D)");
  assert_true(fg_proc_state_rank('T') > fg_proc_state_rank('D'));
  assert_true(fg_proc_state_rank('D') > fg_proc_state_rank('R'));
  assert_true(fg_proc_state_rank('R') > fg_proc_state_rank('S'));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(proc_states_of_real_processes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

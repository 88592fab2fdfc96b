/* test_progress - the progress file (progress_slot.h: its layout and sequence lock) and the
 * rank's writer (progress.c): what a slot says on entering and leaving an operation, that a
 * busy or torn slot is never read, and that a forked child leaves its parent's slot alone.
 * The writer sets itself up once per process from its environment, so each case that uses
 * it runs in a child of its own. */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/progress.h"

enum { NSLOTS = 4, RANK_SLOT = 2 };

static char path[] = "/tmp/fgrun-progress-XXXXXX";
static void *map;

/* A fresh file with NSLOTS empty slots, mapped here as fgrun maps it. */
static int make_file(void **state) {
  (void)state;
  int fd = mkstemp(path);
  size_t size = fg_progress_file_size(NSLOTS);
  if (fd < 0 || ftruncate(fd, (off_t)size) != 0) return -1;
  map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  return map == MAP_FAILED ? -1 : 0;
}

static int remove_file(void **state) {
  (void)state;
  munmap(map, fg_progress_file_size(NSLOTS));
  return unlink(path);
}

static void reset(uint32_t magic) {
  memset(map, 0, fg_progress_file_size(NSLOTS));
  *(fg_progress_header *)map = (fg_progress_header){magic, FG_PROGRESS_VERSION,
                                                    FG_PROGRESS_SLOT_SIZE, NSLOTS};
}

static fg_progress_slot slot(int local_rank) {
  fg_progress_slot s;
  assert_int_equal(fg_progress_read(fg_progress_slot_at(map, local_rank), &s), 0);
  return s;
}

/* For the children, which must not fail through cmocka (that would go on running the tests
 * there): the slot, or exit with status 9. */
static fg_progress_slot child_slot(int local_rank) {
  fg_progress_slot s;
  if (fg_progress_read(fg_progress_slot_at(map, local_rank), &s) != 0) _exit(9);
  return s;
}

/* Runs body as local rank RANK_SLOT (world rank 6) of a job with a progress file. */
static void as_rank(void (*body)(void)) {
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    setenv("FG_PROGRESS_FILE", path, 1);
    setenv("LOCAL_RANK", "2", 1);
    setenv("RANK", "6", 1);
    unsetenv("FG_TRACE_FILE");
    body();
    _exit(0);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("the rank ended with status %#x", status);
}

static void slots_follow_the_header(void **state) {
  (void)state;
  assert_int_equal(sizeof(fg_progress_header), 16);
  assert_int_equal(fg_progress_slot_offset(0), FG_PROGRESS_SLOT_SIZE);
  assert_int_equal(fg_progress_slot_offset(3), 4 * FG_PROGRESS_SLOT_SIZE);
  assert_int_equal(fg_progress_file_size(NSLOTS), (NSLOTS + 1) * FG_PROGRESS_SLOT_SIZE);
  assert_ptr_equal(fg_progress_slot_at(map, 2), (char *)map + 3 * FG_PROGRESS_SLOT_SIZE);
}

static void a_slot_being_written_is_not_read(void **state) {
  (void)state;
  reset(FG_PROGRESS_MAGIC);
  fg_progress_slot *s = fg_progress_slot_at(map, 1), out;
  fg_progress_write_begin(s);
  assert_true(s->gen & 1);
  s->state = FG_PROGRESS_IN;
  s->seq = 5;
  memset(s->op, 'x', sizeof s->op); /* no terminator: the reader puts one */
  memset(s->group, 'g', sizeof s->group);
  memset(s->dtype, 'd', sizeof s->dtype);
  assert_int_equal(fg_progress_read(s, &out), -1);
  fg_progress_write_end(s);
  assert_int_equal(s->gen, 2);
  assert_int_equal(fg_progress_read(s, &out), 0);
  assert_int_equal(out.state, FG_PROGRESS_IN);
  assert_int_equal(out.seq, 5);
  assert_int_equal(strlen(out.op), sizeof out.op - 1);
  assert_int_equal(strlen(out.group), sizeof out.group - 1);
  assert_int_equal(strlen(out.dtype), sizeof out.dtype - 1);
  assert_int_equal(s->op[sizeof s->op - 1], 'x'); /* the slot itself is left alone */
}

typedef struct race {
  fg_progress_slot *s;
  int stop;
} race;

/* Every write keeps seq, count and t_ns equal and op naming them: a reader that got a mix of
 * two writes sees them differ. */
static void *write_until_stopped(void *arg) {
  race *r = arg;
  for (uint64_t i = 1; !__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE); i++) {
    fg_progress_write_begin(r->s);
    r->s->seq = i;
    snprintf(r->s->op, sizeof r->s->op, "op%llu", (unsigned long long)i);
    r->s->count = i;
    r->s->t_ns = i;
    fg_progress_write_end(r->s);
  }
  return NULL;
}

static void readers_never_see_half_a_write(void **state) {
  (void)state;
  reset(FG_PROGRESS_MAGIC);
  race r = {.s = fg_progress_slot_at(map, 0)};
  pthread_t writer;
  assert_int_equal(pthread_create(&writer, NULL, write_until_stopped, &r), 0);
  while (__atomic_load_n(&r.s->gen, __ATOMIC_ACQUIRE) == 0) sched_yield();
  long reads = 0;
  for (int i = 0; i < 100000; i++) {
    fg_progress_slot out;
    if (fg_progress_read(r.s, &out) != 0) continue; /* kept busy: allowed, never wrong */
    char op[24];
    snprintf(op, sizeof op, "op%llu", (unsigned long long)out.seq);
    if (out.count != out.seq || out.t_ns != out.seq || strcmp(out.op, op)) {
      __atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
      pthread_join(writer, NULL);
      fail_msg("a torn read: seq %llu, count %llu, t_ns %llu, op %s",
               (unsigned long long)out.seq, (unsigned long long)out.count,
               (unsigned long long)out.t_ns, out.op);
    }
    reads++;
  }
  __atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
  pthread_join(writer, NULL);
  assert_true(reads > 0);
  assert_true(slot(0).seq > 0);
}

static void enter_and_leave(void) {
  fg_op_mark m = {0};
  fg_op_args args = {.count = 1024, .dtype = "float32", .root = 3, .peer = FG_PROGRESS_NO_RANK};
  fg__op_enter(&m, "broadcast", "world", 7, NULL, &args);
  fg_progress_slot in = child_slot(RANK_SLOT);
  if (in.state != FG_PROGRESS_IN || in.seq != 7 || strcmp(in.op, "broadcast")) _exit(2);
  fg__op_leave(&m);
  uint32_t gen = child_slot(RANK_SLOT).gen;
  fg__op_leave(&m); /* a second leave does nothing */
  if (child_slot(RANK_SLOT).gen != gen) _exit(3);
}

static void the_writer_marks_enter_and_leave(void **state) {
  (void)state;
  reset(FG_PROGRESS_MAGIC);
  as_rank(enter_and_leave);
  fg_progress_slot s = slot(RANK_SLOT);
  assert_int_equal(s.state, FG_PROGRESS_OUT);
  assert_int_equal(s.gen, 4); /* two writes */
  assert_int_equal(s.seq, 7);
  assert_string_equal(s.op, "broadcast");
  assert_string_equal(s.group, "world");
  assert_string_equal(s.dtype, "float32");
  assert_int_equal(s.count, 1024);
  assert_int_equal(s.root, 3);
  assert_int_equal(s.peer, FG_PROGRESS_NO_RANK);
  assert_int_equal(s.flags, 0);
  assert_int_equal(s.rank, 6);
  assert_true(s.pid > 0 && s.pid != getpid());
  assert_true(s.t_ns > 0);
  for (int r = 0; r < NSLOTS; r++) /* nobody else's slot */
    if (r != RANK_SLOT) assert_int_equal(slot(r).gen, 0);
}

static void fail_inside(void) {
  char error[64] = "";
  {
    FG_OP_MARK(m);
    fg__op_enter(&m, "allreduce", "group 1 of world [0, 2]", 3, error, NULL);
    snprintf(error, sizeof error, "timed out"); /* the communicator's text, set before leave */
  } /* the mark leaves here */
}

static void a_failed_operation_is_flagged_at_leave(void **state) {
  (void)state;
  reset(FG_PROGRESS_MAGIC);
  as_rank(fail_inside);
  fg_progress_slot s = slot(RANK_SLOT);
  assert_int_equal(s.state, FG_PROGRESS_OUT);
  assert_int_equal(s.flags, FG_PROGRESS_FAILED);
  assert_string_equal(s.op, "allreduce");
  assert_string_equal(s.group, "group 1 of world [0, 2]");
  assert_string_equal(s.dtype, ""); /* no arguments */
  assert_int_equal(s.root, FG_PROGRESS_NO_RANK);
  assert_int_equal(s.peer, FG_PROGRESS_NO_RANK);
}

static void enter_around_a_child(void) {
  fg_op_mark m = {0}, c = {0};
  fg__op_enter(&m, "allreduce", "world", 1, NULL, NULL);
  pid_t pid = fork();
  if (pid == 0) {
    fg__op_enter(&c, "child", "child", 99, NULL, NULL);
    fg__op_leave(&c);
    _exit(0);
  }
  if (pid < 0 || waitpid(pid, NULL, 0) != pid) _exit(4);
  fg__op_leave(&m);
}

static void a_forked_child_leaves_the_slot_alone(void **state) {
  (void)state;
  reset(FG_PROGRESS_MAGIC);
  as_rank(enter_around_a_child);
  fg_progress_slot s = slot(RANK_SLOT);
  /* a leave right after its enter does not rewrite the names: the child's would show */
  assert_string_equal(s.op, "allreduce");
  assert_int_equal(s.seq, 1);
  assert_int_equal(s.gen, 4);
}

static void enter_once(void) {
  fg_op_mark m = {0};
  fg__op_enter(&m, "barrier", "world", 1, NULL, NULL);
  fg__op_leave(&m);
}

static void a_file_of_another_layout_is_left_alone(void **state) {
  (void)state;
  reset(FG_PROGRESS_MAGIC + 1);
  as_rank(enter_once);
  assert_int_equal(slot(RANK_SLOT).gen, 0);
  fg_progress_header *h = map;
  reset(FG_PROGRESS_MAGIC);
  h->nslots = RANK_SLOT; /* too few slots for local rank 2 */
  as_rank(enter_once);
  assert_int_equal(slot(RANK_SLOT).gen, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(slots_follow_the_header),
      cmocka_unit_test(a_slot_being_written_is_not_read),
      cmocka_unit_test(readers_never_see_half_a_write),
      cmocka_unit_test(the_writer_marks_enter_and_leave),
      cmocka_unit_test(a_failed_operation_is_flagged_at_leave),
      cmocka_unit_test(a_forked_child_leaves_the_slot_alone),
      cmocka_unit_test(a_file_of_another_layout_is_left_alone),
  };
  return cmocka_run_group_tests(tests, make_file, remove_file);
}

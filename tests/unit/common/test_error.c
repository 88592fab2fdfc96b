/* test_error - libfg's error codes (fg.h's FG_ERRNO_MAP, src/common/error.c): every code has
 * a name and a message of its own, errno values are named as errno names them, and
 * fg_comm_init's failure is kept for fg_comm_errmsg(NULL) as fg_store_connect's is for
 * fg_store_errmsg(NULL). The deprecated spellings stay the values they alias. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fg/comm.h"

static void test_every_code_has_its_name_and_message(void **state) {
  (void)state;
  static const struct {
    int code;
    const char *name, *msg;
  } codes[] = {
#define ROW(name, value, msg) {value, "FG_" #name, msg},
      FG_ERRNO_MAP(ROW)
#undef ROW
  };
  assert_int_equal(sizeof codes / sizeof codes[0], 8);
  for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
    assert_string_equal(fg_err_name(codes[i].code), codes[i].name);
    assert_string_equal(fg_strerror(codes[i].code), codes[i].msg);
    for (size_t j = 0; j < i; j++) assert_int_not_equal(codes[i].code, codes[j].code);
  }
  assert_int_equal(FG_EPROTO, -1000);
  assert_int_equal(FG_ELIMIT, -1007);
  assert_string_equal(fg_strerror(FG_ECLOSED), "connection closed by the peer");
}

static void test_errno_values_and_unknown_codes(void **state) {
  (void)state;
  assert_string_equal(fg_err_name(0), "0");
  assert_string_equal(fg_err_name(-ETIMEDOUT), "ETIMEDOUT");
  assert_string_equal(fg_err_name(-ECONNRESET), "ECONNRESET");
  assert_string_equal(fg_strerror(-ETIMEDOUT), strerror(ETIMEDOUT));
  assert_string_equal(fg_err_name(-999999), "UNKNOWN");
  assert_string_equal(fg_strerror(-999999), "unknown error");
}

static void test_comm_init_failure_is_kept_for_errmsg_null(void **state) {
  (void)state;
  fg_comm_options o;
  fg_comm_options_init(&o);
  o.backend = "no-such-backend";
  fg_comm *c = (fg_comm *)&o; /* must come back NULL */
  char err[128] = "untouched";
  assert_int_equal(fg_comm_init(&c, &o, err, sizeof err), -EINVAL);
  assert_null(c);
  assert_non_null(strstr(fg_comm_errmsg(NULL), "unknown backend 'no-such-backend'"));
  assert_string_equal(err, fg_comm_errmsg(NULL));
  /* Without an err buffer the message is still there. */
  o.backend = "other-backend";
  assert_int_equal(fg_comm_init(&c, &o, NULL, 0), -EINVAL);
  assert_non_null(strstr(fg_comm_errmsg(NULL), "unknown backend 'other-backend'"));
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static void test_deprecated_spellings_alias_the_new_ones(void **state) {
  (void)state;
  assert_int_equal(FG_SUM, FG_REDOP_SUM);
  assert_int_equal(FG_PROD, FG_REDOP_PROD);
  assert_int_equal(FG_MIN, FG_REDOP_MIN);
  assert_int_equal(FG_MAX, FG_REDOP_MAX);
  assert_int_equal(FG_AVG, FG_REDOP_AVG);
  assert_string_equal(fg_redop_name(FG_REDOP_MAX), "max");
}
#pragma GCC diagnostic pop

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_code_has_its_name_and_message),
      cmocka_unit_test(test_errno_values_and_unknown_codes),
      cmocka_unit_test(test_comm_init_failure_is_kept_for_errmsg_null),
      cmocka_unit_test(test_deprecated_spellings_alias_the_new_ones),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

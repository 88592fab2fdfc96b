/* test_errorfile - torch's error file (errorfile.c): the nested and the flat form, JSON
 * escapes, and text that is not JSON kept as it is. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "launcher/errorfile.h"

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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(torch_error_files_are_read),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}

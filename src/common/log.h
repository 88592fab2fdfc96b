/* log.h - one line per event on stderr, prefixed with the program's name. */
#ifndef FG_COMMON_LOG_H
#define FG_COMMON_LOG_H

enum fg_log_level { FG_LOG_ERROR, FG_LOG_WARN, FG_LOG_INFO, FG_LOG_DEBUG };

/* The name printed before every line ("fgrun", "fgstore", ...). */
void fg__log_set_program(const char *name);
void fg__log_set_level(enum fg_log_level level);
enum fg_log_level fg__log_get_level(void);
/* Parses "error", "warn", "info" or "debug"; returns -1 for anything else. */
int fg__log_level_parse(const char *s);

void fg__log(enum fg_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define fg_error(...) fg__log(FG_LOG_ERROR, __VA_ARGS__)
#define fg_warn(...) fg__log(FG_LOG_WARN, __VA_ARGS__)
#define fg_info(...) fg__log(FG_LOG_INFO, __VA_ARGS__)
#define fg_debug(...) fg__log(FG_LOG_DEBUG, __VA_ARGS__)

#endif

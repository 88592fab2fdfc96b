/* errorfile.h - reading the JSON error file torch's @record writes for a failed worker:
 * {"message": {"message": "...", "extraInfo": {"py_callstack": "...", "timestamp": "..."}}} */
#ifndef FG_LAUNCHER_ERRORFILE_H
#define FG_LAUNCHER_ERRORFILE_H

#include <stddef.h>

typedef struct fg_error_info {
  char *message;   /* "ValueError: boom" */
  char *callstack; /* the Python traceback */
  char *timestamp;
  char *raw;       /* the file's text when it is not JSON of that shape */
} fg_error_info;

enum { FG_ERRFILE_NONE = 0, FG_ERRFILE_PARSED = 1, FG_ERRFILE_RAW = 2 };

/* Reads path (at most 1 MiB). Returns FG_ERRFILE_NONE when there is no (or an empty)
 * file, FG_ERRFILE_PARSED with message (and maybe callstack), or FG_ERRFILE_RAW with raw. */
int fg_error_file_read(const char *path, fg_error_info *info);
/* The same from text already in memory. */
int fg_error_text_parse(const char *text, size_t len, fg_error_info *info);
void fg_error_info_free(fg_error_info *info);

#endif

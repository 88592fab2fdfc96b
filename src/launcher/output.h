/* output.h - one worker stream (stdout or stderr) read from a pipe on the agent's loop.
 *
 * Bytes go raw to the log file; to the console they go line by line, each line behind
 * the rank prefix and each whole line in one write(2), so ranks never interleave within
 * a line. A line longer than FG_LINE_MAX leaves in pieces and a last line without a
 * newline leaves at EOF; no byte is added, changed or dropped apart from the prefixes. */
#ifndef FG_LAUNCHER_OUTPUT_H
#define FG_LAUNCHER_OUTPUT_H

#include <stddef.h>
#include <uv.h>

#include "common/buf.h"

#define FG_LINE_MAX (64 * 1024)
#define FG_TAIL_BYTES (16 * 1024)

/* The last bytes of a stream, for the failure summary. */
typedef struct fg_tail {
  char data[FG_TAIL_BYTES];
  uint64_t total; /* bytes ever written; data[total % FG_TAIL_BYTES] is the oldest */
} fg_tail;

void fg_tail_write(fg_tail *t, const char *p, size_t n);
/* Appends the last `lines` lines (without a final newline) to out. */
void fg_tail_lines(const fg_tail *t, int lines, fg_buf *out);

typedef struct fg_stream fg_stream;
typedef void (*fg_stream_cb)(fg_stream *s);

struct fg_stream {
  uv_pipe_t pipe;
  int console_fd;     /* 1 or 2; -1 when this stream does not reach the console */
  int log_fd;         /* -1: no log file */
  const char *prefix; /* not owned */
  size_t prefix_len;
  fg_buf line;        /* the current line, not yet written */
  int midline;        /* part of the current line has been written already */
  fg_tail *tail;      /* kept when keep_tail was asked for */
  int open;           /* the pipe handle is open */
  uint64_t bytes;     /* read so far (hang reports watch it for signs of life) */
  fg_stream_cb on_closed;
  void *data;
};

typedef struct fg_stream_options {
  int console_fd;
  const char *log_path; /* NULL: no log file */
  const char *prefix;
  int keep_tail;
  fg_stream_cb on_closed; /* the pipe is closed: EOF, error or fg_stream_close */
  void *data;
} fg_stream_options;

/* Makes the pipe and opens the log file; *child_fd gets the pipe's write end, which the
 * caller hands to the worker and then closes. Returns 0 or a negative errno with err. */
int fg_stream_open(fg_stream *s, uv_loop_t *loop, const fg_stream_options *opt, int *child_fd,
                   char *err, size_t errlen);
/* Starts reading. */
int fg_stream_start(fg_stream *s);
/* Flushes what is pending and closes the pipe (on_closed follows from the loop). */
void fg_stream_close(fg_stream *s);
/* Releases the buffers once the pipe is closed. */
void fg_stream_free(fg_stream *s);

/* Writes all of p to fd (fgrun's stdout or stderr), retrying short writes. After EPIPE or
 * another error the fd is treated as gone and later writes are dropped. */
void fg_console_write(int fd, const void *p, size_t n);
/* Frees the buffer shared by all streams. */
void fg_output_cleanup(void);

#endif

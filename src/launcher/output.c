/* output.c - worker output: pipes in, prefixed lines to the console, raw bytes to logs. */
#include "launcher/output.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

/* Reads are handled to completion before the next one starts, so one read buffer and
 * one output batch serve every stream. */
static char read_buf[64 * 1024];
static fg_buf batch;
static int console_gone[3];

void fg_console_write(int fd, const void *p, size_t n) {
  if (fd < 1 || fd > 2 || console_gone[fd]) return;
  const char *q = p;
  while (n > 0) {
    ssize_t w = write(fd, q, n);
    if (w > 0) {
      q += w;
      n -= (size_t)w;
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && errno == EAGAIN) {
      /* someone made our stdout non-blocking: wait rather than drop output */
      struct pollfd pfd = {.fd = fd, .events = POLLOUT};
      poll(&pfd, 1, 1000);
    } else {
      console_gone[fd] = 1; /* EPIPE: the reader left; the job goes on without a console */
      return;
    }
  }
}

void fg_output_cleanup(void) { fg__buf_free(&batch); }

/* --- the tail ring ------------------------------------------------------------------------ */

void fg_tail_write(fg_tail *t, const char *p, size_t n) {
  if (n > FG_TAIL_BYTES) {
    t->total += n - FG_TAIL_BYTES;
    p += n - FG_TAIL_BYTES;
    n = FG_TAIL_BYTES;
  }
  while (n > 0) {
    size_t at = (size_t)(t->total % FG_TAIL_BYTES);
    size_t chunk = FG__MIN(n, FG_TAIL_BYTES - at);
    memcpy(t->data + at, p, chunk);
    t->total += chunk;
    p += chunk;
    n -= chunk;
  }
}

void fg_tail_lines(const fg_tail *t, int lines, fg_buf *out) {
  size_t have = (size_t)FG__MIN(t->total, (uint64_t)FG_TAIL_BYTES);
  char *flat = malloc(have + 1);
  if (!flat) return;
  size_t start = (size_t)((t->total - have) % FG_TAIL_BYTES);
  size_t first = FG__MIN(have, FG_TAIL_BYTES - start);
  memcpy(flat, t->data + start, first);
  memcpy(flat + first, t->data, have - first);
  size_t end = have;
  if (end && flat[end - 1] == '\n') end--;
  size_t begin = end;
  for (int seen = 0; begin > 0; begin--)
    if (flat[begin - 1] == '\n' && ++seen == lines) break;
  fg__buf_put(out, flat + begin, end - begin);
  free(flat);
}

/* --- streams ---------------------------------------------------------------------------- */

static void log_bytes(fg_stream *s, const char *p, size_t n) {
  while (n > 0 && s->log_fd >= 0) {
    ssize_t w = write(s->log_fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      fg_warn("writing a worker log file failed: %s; logging of that stream stops",
              strerror(w < 0 ? errno : EIO));
      close(s->log_fd);
      s->log_fd = -1;
      return;
    }
    p += w;
    n -= (size_t)w;
  }
}

/* Appends a piece of the current line to the batch, behind the prefix if it starts it. */
static void put_piece(fg_stream *s, const char *p, size_t n) {
  if (!s->midline) fg__buf_put(&batch, s->prefix, s->prefix_len);
  fg__buf_put(&batch, p, n);
}

static void console_bytes(fg_stream *s, const char *p, size_t n) {
  fg__buf_reset(&batch);
  while (n > 0) {
    const char *nl = memchr(p, '\n', n);
    if (!nl) {
      fg__buf_put(&s->line, p, n);
      if (s->line.len >= FG_LINE_MAX) {
        put_piece(s, (const char *)s->line.data, s->line.len);
        s->midline = 1;
        fg__buf_reset(&s->line);
      }
      break;
    }
    size_t upto = (size_t)(nl - p) + 1;
    if (s->line.len) {
      put_piece(s, (const char *)s->line.data, s->line.len);
      s->midline = 1;
      fg__buf_reset(&s->line);
    }
    put_piece(s, p, upto);
    s->midline = 0;
    p += upto;
    n -= upto;
  }
  if (batch.len) fg_console_write(s->console_fd, batch.data, batch.len);
}

static void flush_partial_line(fg_stream *s) {
  if (s->console_fd < 0 || s->line.len == 0) return;
  fg__buf_reset(&batch);
  put_piece(s, (const char *)s->line.data, s->line.len);
  fg__buf_reset(&s->line);
  s->midline = 0;
  fg_console_write(s->console_fd, batch.data, batch.len);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h, (void)suggested;
  *buf = uv_buf_init(read_buf, sizeof read_buf);
}

static void on_pipe_closed(uv_handle_t *h) {
  fg_stream *s = h->data;
  s->open = 0;
  if (s->on_closed) s->on_closed(s);
}

static void on_read(uv_stream_t *pipe, ssize_t nread, const uv_buf_t *buf) {
  fg_stream *s = pipe->data;
  if (nread > 0) {
    s->bytes += (uint64_t)nread;
    log_bytes(s, buf->base, (size_t)nread);
    if (s->tail) fg_tail_write(s->tail, buf->base, (size_t)nread);
    if (s->console_fd >= 0) console_bytes(s, buf->base, (size_t)nread);
  } else if (nread < 0) {
    fg_stream_close(s); /* EOF, or an error that ends the stream just the same */
  }
}

int fg_stream_open(fg_stream *s, uv_loop_t *loop, const fg_stream_options *opt, int *child_fd,
                   char *err, size_t errlen) {
  memset(s, 0, sizeof *s);
  s->console_fd = opt->console_fd;
  s->log_fd = -1;
  s->prefix = opt->prefix ? opt->prefix : "";
  s->prefix_len = strlen(s->prefix);
  s->on_closed = opt->on_closed;
  s->data = opt->data;
  if (opt->keep_tail && !(s->tail = calloc(1, sizeof *s->tail)))
    return fg__fail(err, errlen, -ENOMEM, "out of memory");
  if (opt->log_path) {
    s->log_fd = open(opt->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (s->log_fd < 0)
      return fg__fail(err, errlen, -errno, "cannot create %s: %s", opt->log_path,
                     strerror(errno));
  }
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return fg__fail(err, errlen, -errno, "pipe: %s", strerror(errno));
  int rc = uv_pipe_init(loop, &s->pipe, 0);
  if (rc != 0) {
    close(fds[0]);
    close(fds[1]);
    return fg__fail(err, errlen, rc, "pipe: %s", uv_strerror(rc));
  }
  s->pipe.data = s;
  s->open = 1; /* from here on the handle needs fg_stream_close, even on failure */
  if ((rc = uv_pipe_open(&s->pipe, fds[0])) != 0) {
    close(fds[0]);
    close(fds[1]);
    return fg__fail(err, errlen, rc, "pipe: %s", uv_strerror(rc));
  }
  *child_fd = fds[1];
  return 0;
}

int fg_stream_start(fg_stream *s) { return uv_read_start((uv_stream_t *)&s->pipe, on_alloc, on_read); }

void fg_stream_close(fg_stream *s) {
  if (!s->open || uv_is_closing((uv_handle_t *)&s->pipe)) return;
  flush_partial_line(s);
  uv_read_stop((uv_stream_t *)&s->pipe);
  uv_close((uv_handle_t *)&s->pipe, on_pipe_closed);
}

void fg_stream_free(fg_stream *s) {
  fg__buf_free(&s->line);
  free(s->tail);
  s->tail = NULL;
  if (s->log_fd >= 0) close(s->log_fd);
  s->log_fd = -1;
}

/* events.c - see events.h. */
#include "launcher/events.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/json.h"
#include "common/util.h"

/* What one event says beyond the agent's state. */
typedef struct event {
  const char *state, *source;
  const fg_worker *worker; /* NULL for the agent's */
  int role_world_size;
  const char *raw_error;   /* NULL: null */
} event;

static char *worker_metadata(const fg_events *e, const fg_events_agent_state *st,
                             const event *ev) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (!f) return NULL;
  fg_jsonw w;
  fg__jsonw_init(&w, f);
  fg__jsonw_open(&w, '{');
  fg__jsonw_key(&w, "group_world_size");
  fg__jsonw_int(&w, st->group_world_size);
  fg__jsonw_key(&w, "entry_point");
  fg__jsonw_str(&w, e->entry_point);
  if (ev->worker) { /* torch writes these as 1-tuples */
    const char *keys[] = {"local_rank", "role_rank", "role_world_size"};
    int values[] = {ev->worker->local_rank, ev->worker->rank, ev->role_world_size};
    for (size_t i = 0; i < FG_ARRAY_LEN(keys); i++) {
      fg__jsonw_key(&w, keys[i]);
      fg__jsonw_open(&w, '[');
      fg__jsonw_int(&w, values[i]);
      fg__jsonw_close(&w);
    }
  }
  fg__jsonw_close(&w);
  fclose(f);
  return text;
}

static void emit(const fg_events *e, const fg_events_agent_state *st, const event *ev) {
  char *inner = worker_metadata(e, st, ev), *text = NULL;
  size_t len = 0;
  FILE *f = inner ? open_memstream(&text, &len) : NULL;
  if (!f) {
    free(inner);
    return;
  }
  char name[96], host[256] = "", id[16];
  snprintf(name, sizeof name, "torchelastic.worker.status.%s", ev->state);
  gethostname(host, sizeof host - 1);
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  fg_jsonw w;
  fg__jsonw_init(&w, f);
  fg__jsonw_open(&w, '{');
  fg__jsonw_key(&w, "name");
  fg__jsonw_str(&w, name);
  fg__jsonw_key(&w, "source");
  fg__jsonw_str(&w, ev->source);
  fg__jsonw_key(&w, "timestamp");
  fg__jsonw_int(&w, (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000);
  fg__jsonw_key(&w, "metadata");
  fg__jsonw_open(&w, '{');
  fg__jsonw_key(&w, "run_id");
  fg__jsonw_str(&w, e->run_id);
  fg__jsonw_key(&w, "global_rank");
  ev->worker ? fg__jsonw_int(&w, ev->worker->rank) : fg__jsonw_null(&w);
  fg__jsonw_key(&w, "group_rank");
  fg__jsonw_int(&w, st->group_rank);
  fg__jsonw_key(&w, "worker_id");
  snprintf(id, sizeof id, "%d", ev->worker ? ev->worker->pid : 0);
  ev->worker && ev->worker->pid > 0 ? fg__jsonw_str(&w, id) : fg__jsonw_null(&w);
  fg__jsonw_key(&w, "role");
  fg__jsonw_str(&w, e->role);
  fg__jsonw_key(&w, "hostname");
  fg__jsonw_str(&w, host);
  fg__jsonw_key(&w, "state");
  fg__jsonw_str(&w, ev->state);
  fg__jsonw_key(&w, "total_run_time");
  fg__jsonw_int(&w, (long long)((fg__now_ns() - e->start_ns) / 1000000000ull));
  fg__jsonw_key(&w, "rdzv_backend");
  fg__jsonw_str(&w, e->backend);
  fg__jsonw_key(&w, "raw_error");
  ev->raw_error ? fg__jsonw_str(&w, ev->raw_error) : fg__jsonw_null(&w);
  fg__jsonw_key(&w, "metadata");
  fg__jsonw_str(&w, inner);
  fg__jsonw_key(&w, "agent_restarts");
  fg__jsonw_int(&w, st->restarts);
  fg__jsonw_key(&w, "duration_ms");
  fg__jsonw_null(&w);
  fg__jsonw_close(&w);
  fg__jsonw_close(&w);
  fputc('\n', f);
  fclose(f);
  if (write(STDERR_FILENO, text, len) < 0) { /* nowhere left to say it */
  }
  free(text);
  free(inner);
}

/* The worker's @record error file, as torchrun passes it on (its text, not parsed). */
static char *error_file_text(const fg_worker *w) {
  FILE *f = w->error_file ? fopen(w->error_file, "re") : NULL;
  if (!f) return NULL;
  char *text = malloc(65536);
  size_t n = text ? fread(text, 1, 65535, f) : 0;
  fclose(f);
  if (text) text[n] = '\0';
  if (text && n == 0) {
    free(text);
    return NULL;
  }
  return text;
}

void fg_events_attempt(const fg_events *e, const fg_events_agent_state *st, const fg_worker *ws,
                       int n, const fg_worker *root, int failed, int role_world_size) {
  if (!e->on) return;
  for (int i = 0; i < n; i++) {
    const fg_worker *w = &ws[i];
    /* A rank that failed of itself: the root cause, or one that exited non-zero (a signal
     * is likelier fgrun's stopping it) */
    int own_failure = w == root || (w->state == FG_WORKER_EXITED && w->exit_code != 0 &&
                                    w->term_signal == 0);
    const char *state = !failed && !root ? "SUCCEEDED" : own_failure ? "FAILED" : "TERMINATED";
    char *raw = own_failure ? error_file_text(w) : NULL;
    event ev = {.state = state, .source = "WORKER", .worker = w,
                .role_world_size = role_world_size, .raw_error = raw};
    emit(e, st, &ev);
    free(raw);
  }
}

void fg_events_job(const fg_events *e, const fg_events_agent_state *st, int status) {
  if (!e->on) return;
  event ev = {.state = status == 0 ? "SUCCEEDED" : "FAILED", .source = "AGENT",
              .raw_error = status == 0 || !e->why[0] ? NULL : e->why};
  emit(e, st, &ev);
}

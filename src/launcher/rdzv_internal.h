/* rdzv_internal.h - what the rendezvous files share: the handle and its store helpers.
 *
 * rdzv.c connects, joins rounds and assigns ranks; rdzv_watch.c sends keep-alives, reads
 * the members' end records and waits for them at the end. */
#ifndef FG_LAUNCHER_RDZV_INTERNAL_H
#define FG_LAUNCHER_RDZV_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "fg/store.h"
#include "launcher/rdzv.h"

/* What this agent knows about a member of its round. */
typedef struct fg_rdzv_peer {
  int64_t beats;      /* its keep-alive counter when last read */
  int64_t seen_ms;    /* when that counter last moved (our clock) */
  int ended;          /* its end record was read */
  int dead;           /* its keep-alives stopped */
  char state[16];     /* "done", "restart", "left", "failed" */
  int status;
  char reason[256];
} fg_rdzv_peer;

struct fg_rdzv {
  fg_rdzv_settings s;
  char *host, *run_id, *role; /* owned copies of s's strings */
  fg_store *conn;             /* NULL until connected */
  fg_store *kv;               /* the job's scope */
  int id;                     /* -1 until registered */
  int64_t next_beat_ms;
  atomic_int cancelled;
  char addr[FG_RDZV_NAME_MAX], hostname[FG_RDZV_NAME_MAX];

  fg_rdzv_round round;        /* the current round; nodes NULL between rounds */
  fg_rdzv_peer *peers;        /* by node rank */
  int64_t ended_seen;
  char err[768];
};

/* Store calls that put a message naming the key and the store into rz->err on failure. */
int fg_rdzv_add(fg_rdzv *rz, const char *key, int64_t delta, int64_t *value);
int fg_rdzv_exists(fg_rdzv *rz, const char *key);     /* 1, 0, or a negative error */
int fg_rdzv_get(fg_rdzv *rz, const char *key, char *out, size_t outlen);
int fg_rdzv_set(fg_rdzv *rz, const char *key, const char *value);
/* Sets key to value unless it is set; out gets the value that stands. */
int fg_rdzv_set_once(fg_rdzv *rz, const char *key, const char *value, char *out, size_t outlen);

/* "<round>/<what>.<index>", or "<round>/<what>" when index < 0. */
void fg_rdzv_key(char *out, size_t len, int round, const char *what, int index);
/* Sends a keep-alive when one is due. */
int fg_rdzv_beat(fg_rdzv *rz);
/* Sleeps ms (in short naps); -ECANCELED once fg_rdzv_cancel was called. */
int fg_rdzv_pause(fg_rdzv *rz, int ms);
/* The job's "closed" record: 1 with status and reason filled in, 0 when open. */
int fg_rdzv_job_closed(fg_rdzv *rz, int *status, char *reason, size_t len);
/* "node 1 (10.0.0.2)" */
void fg_rdzv_node_name(const fg_rdzv *rz, int node_rank, char *out, size_t len);
int fg_rdzv_dead_after_ms(const fg_rdzv *rz);

#endif

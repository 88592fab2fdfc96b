/* checkpoint.c - checkpoint-integration: simulated training with synthetic
 * metrics, best-checkpoint preservation, a total-count limit, and a dual-EMA
 * divergence detector whose state travels with each checkpoint.
 *
 * Every rank computes the same metrics, so every rank keeps the same best list;
 * rank 0 alone writes and deletes, and barriers keep every rank's view of the
 * checkpoint directory in step (the race-condition fix: the best list is
 * updated before the save, and deletion never touches a best checkpoint).
 * Checkpoints are written atomically (ckpt_io.c); halfway through each write
 * every rank looks at the directory, which is where a non-atomic write shows. */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/util.h"
#include "scenarios/ckpt_io.h"
#include "scenarios/scenario.h"

#define MAX_CKPTS 64
#define MODEL_FLOATS 4096

typedef struct params {
  int steps;
  int eval_every;
  int preserve_n_best;
  int save_total_limit;
  int spike_step; /* 0: no spike */
  int detector;   /* on or off */
  double threshold;
  int crash_step; /* rank 0 dies in the middle of saving this step (test hook) */
} params;

typedef struct detector {
  double shortv, longv;
  int initialized;
  int triggered;
} detector;

typedef struct best {
  int step;
  double loss;
} best;

typedef struct run {
  scn *s;
  params p;
  char dir[4096]; /* <output>/<basic|spike>/checkpoints */
  best best[MAX_CKPTS];
  int nbest;
  detector det;
  detector det_at[MAX_CKPTS]; /* the detector state saved with each checkpoint */
  int saved_steps[MAX_CKPTS];
  int nsaved;
  int stopped_at; /* step the detector stopped training, 0 if it did not */
  int views_differ, differ_rank; /* the first save after which a rank's view differed */
  int saving;                    /* the step being saved */
  int looks;                     /* times this rank looked at a save halfway */
  int partial_at;                /* the save during which it saw a partial checkpoint */
  char partial_why[512];
  int midway_rc;                 /* a communication failure halfway through a save */
  int write_rc;                  /* rank 0's first failed write */
} run;

/* --- the synthetic model ------------------------------------------------------------- */

static double eval_loss(const params *p, int step) {
  if (p->spike_step && step >= p->spike_step) return 8.5 + (step - p->spike_step) * 0.05;
  return 5.0 * pow(0.98, step) + 2.5;
}

/* Small deterministic noise in [-0.01, 0.01]. */
static double train_loss(const params *p, int step) {
  uint32_t x = (uint32_t)step * 2654435761u;
  x ^= x >> 15;
  return eval_loss(p, step) + ((double)(x % 2001) - 1000.0) / 100000.0;
}

static void detector_update(detector *d, double x, double threshold) {
  if (!d->initialized) {
    d->shortv = d->longv = x;
    d->initialized = 1;
  } else {
    d->shortv = 0.2 * x + 0.8 * d->shortv;
    d->longv = 0.01 * x + 0.99 * d->longv;
  }
  if (d->shortv - d->longv >= threshold) d->triggered = 1;
}

/* --- best list and directory --------------------------------------------------------- */

static int is_best(const run *r, int step) {
  for (int i = 0; i < r->nbest; i++)
    if (r->best[i].step == step) return 1;
  return 0;
}

static void update_best(run *r, int step, double loss) {
  int keep = r->p.preserve_n_best + scn_fault(r->s, "best-overflow");
  int i = r->nbest < MAX_CKPTS ? r->nbest++ : r->nbest - 1;
  r->best[i] = (best){step, loss};
  if (!scn_fault(r->s, "unsorted-best")) {
    for (; i > 0 && r->best[i - 1].loss > r->best[i].loss; i--) {
      best t = r->best[i];
      r->best[i] = r->best[i - 1];
      r->best[i - 1] = t;
    }
  }
  if (r->nbest > keep) r->nbest = keep;
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* The checkpoint steps on disk, ascending. */
static int list_on_disk(const run *r, int *steps) {
  int n = 0, step;
  DIR *d = opendir(r->dir);
  if (!d) return 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < MAX_CKPTS)
    if (ckpt_name_step(e->d_name, &step)) steps[n++] = step;
  closedir(d);
  qsort(steps, (size_t)n, sizeof *steps, cmp_int);
  return n;
}

static void ckpt_path(const run *r, int step, char *out, size_t len) {
  snprintf(out, len, "%s/checkpoint-%d", r->dir, step);
}

/* --- saving -------------------------------------------------------------------------- */

/* Every rank looks at the directory while rank 0 is halfway through writing a checkpoint:
 * whatever already carries a final name must be complete (what the atomic rename buys). */
static int look_midway(run *r) {
  scn *s = r->s;
  int rc = scn_comm(s, s->world, fg_barrier(s->world), "barrier halfway through a save");
  if (rc) return rc;
  int steps[MAX_CKPTS], n = list_on_disk(r, steps);
  for (int i = 0; i < n && !r->partial_at; i++) {
    char path[4200];
    ckpt_path(r, steps[i], path, sizeof path);
    if (ckpt_verify(path, r->partial_why, sizeof r->partial_why) != 0) r->partial_at = r->saving;
  }
  r->looks++;
  /* Rank 0 writes on only when everyone has looked. */
  return scn_comm(s, s->world, fg_barrier(s->world), "barrier after looking halfway");
}

/* Rank 0's hook in the middle of the write: the crash a test asked for, or the look. */
static int midway(void *arg) {
  run *r = arg;
  if (r->saving == r->p.crash_step) {
    fflush(NULL);
    raise(SIGKILL);
  }
  return r->midway_rc = look_midway(r);
}

static int write_checkpoint(run *r, int step, double loss) {
  float *model = malloc(MODEL_FLOATS * sizeof *model);
  if (!model) return -ENOMEM;
  for (int i = 0; i < MODEL_FLOATS; i++) model[i] = (float)sin(step * 0.001 + i);
  char metrics[256], det[256], name[64];
  snprintf(metrics, sizeof metrics, "{\"step\": %d, \"eval_loss\": %.17g, \"train_loss\": %.17g}\n",
           step, loss, train_loss(&r->p, step));
  detector d = r->det;
  if (scn_fault(r->s, "corrupt-detector")) d.shortv = nextafter(d.shortv, INFINITY);
  /* %a prints the exact bits, so a restore can be compared bit for bit. */
  snprintf(det, sizeof det, "short %a\nlong %a\ninitialized %d\ntriggered %d\n", d.shortv,
           d.longv, d.initialized, d.triggered);
  ckpt_file files[] = {{"model.bin", model, MODEL_FLOATS * sizeof *model},
                       {"metrics.json", metrics, strlen(metrics)},
                       {"detector.txt", det, strlen(det)}};
  snprintf(name, sizeof name, "checkpoint-%d", step);
  ckpt_hook hook = {2, midway, r}; /* after model.bin and metrics.json */
  int rc = ckpt_write(r->dir, name, files, 3, &hook, !scn_fault(r->s, "non-atomic"));
  free(model);
  return rc;
}

/* Deletes the oldest checkpoints beyond the limit, never one on the best list. */
static void delete_old(run *r) {
  if (scn_fault(r->s, "keep-all")) return;
  int steps[MAX_CKPTS];
  int n = list_on_disk(r, steps);
  for (int i = 0; i < n && n > r->p.save_total_limit; i++) {
    if (is_best(r, steps[i])) continue;
    char path[4200];
    ckpt_path(r, steps[i], path, sizeof path);
    if (ckpt_remove(path) == 0) {
      memmove(steps + i, steps + i + 1, (size_t)(n - i - 1) * sizeof *steps);
      n--;
      i--;
    }
  }
}

/* Every rank hashes what it sees on disk; all the hashes must agree. */
static int compare_views(run *r, int step) {
  int steps[MAX_CKPTS];
  int n = list_on_disk(r, steps);
  if (scn_fault(r->s, "diverge-ranks") && r->s->rank == r->s->size - 1) steps[n++] = 99999;
  uint64_t mine = ckpt_fnv1a(steps, (size_t)n * sizeof *steps) ^ (uint64_t)n;
  uint64_t *all = calloc((size_t)r->s->size, sizeof *all);
  if (!all) return -ENOMEM;
  int rc = scn_allgather(r->s, r->s->world, &mine, all, sizeof mine, "comparing checkpoint views");
  for (int i = 0; rc == 0 && i < r->s->size && !r->views_differ; i++)
    if (all[i] != all[0]) r->views_differ = step, r->differ_rank = i;
  free(all);
  return rc;
}

static int save(run *r, int step, double loss) {
  scn *s = r->s;
  update_best(r, step, loss); /* first: deletion must already know this one */
  int rc = 0, looks = r->looks;
  r->saving = step;
  r->midway_rc = 0;
  if (s->rank == 0) {
    rc = write_checkpoint(r, step, loss);
    if (r->midway_rc) return r->midway_rc;
    if (rc) scn_error(s, "writing checkpoint-%d: %s", step, strerror(-rc));
    if (rc && !r->write_rc) r->write_rc = rc; /* the run fails, after the others' barriers */
  }
  /* The others look while rank 0 writes; if its write failed early, it looks too. */
  if (r->looks == looks && (rc = look_midway(r)) != 0) return rc;
  if (r->nsaved < MAX_CKPTS) {
    r->det_at[r->nsaved] = r->det;
    r->saved_steps[r->nsaved++] = step;
  }
  if ((rc = scn_comm(s, s->world, fg_barrier(s->world), "barrier after save"))) return rc;
  if (s->rank == 0) {
    delete_old(r);
    if (scn_fault(s, "delete-best") && r->nbest > 0) {
      char path[4200];
      ckpt_path(r, r->best[0].step, path, sizeof path);
      ckpt_remove(path);
    }
  }
  if ((rc = scn_comm(s, s->world, fg_barrier(s->world), "barrier after cleanup"))) return rc;
  return compare_views(r, step);
}

/* --- verification -------------------------------------------------------------------- */

static int load_detector(const char *dir, detector *d) {
  char *text;
  size_t len;
  if (ckpt_read(dir, "detector.txt", &text, &len) != 0) return -1;
  int ok = sscanf(text, "short %la\nlong %la\ninitialized %d\ntriggered %d", &d->shortv,
                  &d->longv, &d->initialized, &d->triggered) == 4;
  free(text);
  return ok ? 0 : -1;
}

static void verify(run *r) {
  scn *s = r->s;
  const params *p = &r->p;
  char list[256] = "";
  for (int i = 0, n = 0; i < r->nbest; i++)
    n += snprintf(list + n, sizeof list - (size_t)n, "%s%d(%.3f)", i ? ", " : "",
                  r->best[i].step, r->best[i].loss);
  scn_check(s, r->nbest <= p->preserve_n_best, "best list has %d entries, at most %d [%s]",
            r->nbest, p->preserve_n_best, list);
  int sorted = 1;
  for (int i = 1; i < r->nbest; i++) sorted &= r->best[i - 1].loss <= r->best[i].loss;
  scn_check(s, sorted, "best list is sorted by ascending loss [%s]", list);
  for (int i = 0; i < r->nbest; i++) {
    char path[4200], why[512] = "";
    ckpt_path(r, r->best[i].step, path, sizeof path);
    int ok = ckpt_verify(path, why, sizeof why) == 0;
    scn_check(s, ok, "best checkpoint-%d exists and is complete%s%s", r->best[i].step,
              ok ? "" : ": ", why);
  }
  int steps[MAX_CKPTS];
  int n = list_on_disk(r, steps);
  scn_check(s, n <= p->save_total_limit + p->preserve_n_best,
            "%d checkpoints on disk, at most save_total_limit %d + preserve_n_best %d", n,
            p->save_total_limit, p->preserve_n_best);
  if (r->views_differ)
    scn_check(s, 0, "every rank saw the same checkpoint set after each save (no: after saving "
              "step %d, rank %d's differs from rank 0's)", r->views_differ, r->differ_rank);
  else
    scn_check(s, 1, "every rank saw the same checkpoint set after each save");
  if (r->partial_at)
    scn_check(s, 0, "no checkpoint looked complete while being written (no: halfway through "
              "saving step %d: %s)", r->partial_at, r->partial_why);
  else
    scn_check(s, 1, "no checkpoint looked complete while being written (looked halfway through "
              "each of %d saves)", r->looks);
  if (p->spike_step) {
    scn_check(s, r->stopped_at > 0, "the detector triggered on the spike at step %d%s",
              p->spike_step, r->stopped_at ? "" : " (it did not)");
    if (r->stopped_at)
      scn_log(s, "training stopped at step %d (short EMA %.4f, long EMA %.4f)", r->stopped_at,
              r->det.shortv, r->det.longv);
    for (int step = p->eval_every; step < p->spike_step; step += p->eval_every) {
      char path[4200], why[512];
      ckpt_path(r, step, path, sizeof path);
      scn_check(s, ckpt_verify(path, why, sizeof why) == 0,
                "pre-spike checkpoint-%d survived", step);
    }
  }
  /* The newest checkpoint's detector state restores bit for bit. */
  if (r->nsaved > 0) {
    int last = r->saved_steps[r->nsaved - 1];
    char path[4200];
    ckpt_path(r, last, path, sizeof path);
    detector d = {0};
    const detector *want = &r->det_at[r->nsaved - 1];
    int ok = load_detector(path, &d) == 0 && d.shortv == want->shortv &&
             d.longv == want->longv && d.initialized == want->initialized &&
             d.triggered == want->triggered;
    scn_check(s, ok, "detector state restored from checkpoint-%d: short %.17g long %.17g "
              "(saved %.17g, %.17g)", last, d.shortv, d.longv, want->shortv, want->longv);
  }
}

/* --- one training run ---------------------------------------------------------------- */

static int train(scn *s, const char *which, params p) {
  run *r = calloc(1, sizeof *r);
  if (!r) return -ENOMEM;
  r->s = s;
  r->p = p;
  char base[3072];
  if (snprintf(base, sizeof base, "%s/%s", s->output_dir, which) >= (int)sizeof base ||
      snprintf(r->dir, sizeof r->dir, "%s/checkpoints", base) >= (int)sizeof r->dir) {
    free(r);
    scn_error(s, "output directory path too long");
    return -ENAMETOOLONG;
  }
  if (s->rank == 0) {
    mkdir(base, 0755);
    mkdir(r->dir, 0755);
  }
  int rc = scn_comm(s, s->world, fg_barrier(s->world), "barrier before training");
  scn_log(s, "%s: %d steps, eval/save every %d, preserve_n_best %d, save_total_limit %d%s", which,
          p.steps, p.eval_every, p.preserve_n_best, p.save_total_limit,
          p.spike_step ? ", spike injected" : "");
  for (int step = 1; rc == 0 && step <= p.steps; step++) {
    if (p.detector) detector_update(&r->det, train_loss(&p, step), p.threshold);
    if (step % p.eval_every == 0) {
      double loss = eval_loss(&p, step);
      scn_log(s, "step %d: eval_loss %.4f", step, loss);
      rc = save(r, step, loss);
    }
    if (r->det.triggered) {
      r->stopped_at = step;
      break;
    }
  }
  if (rc == 0) verify(r);
  if (rc == 0) rc = r->write_rc;
  free(r);
  return rc;
}

static const char *const faults[] = {"delete-best", "unsorted-best", "best-overflow",
                                     "keep-all", "no-detector", "diverge-ranks",
                                     "corrupt-detector", "non-atomic", NULL};

static int run_checkpoint(scn *s, int argc, char **argv) {
  const char *which = "all";
  params base = {.eval_every = 25, .preserve_n_best = 2, .save_total_limit = 3,
                 .threshold = 0.75, .spike_step = 75};
  static const struct option opts[] = {
      {"scenario", required_argument, 0, 's'},   {"eval-every", required_argument, 0, 'e'},
      {"preserve-n-best", required_argument, 0, 'b'},
      {"save-total-limit", required_argument, 0, 'l'},
      {"threshold", required_argument, 0, 't'},  {"spike-step", required_argument, 0, 'k'},
      {"crash-during-save", required_argument, 0, 'c'}, {0, 0, 0, 0}};
  optind = 1;
  opterr = 0;
  int o, idx = 0;
  while ((o = getopt_long(argc, argv, "", opts, &idx)) != -1) {
    int ok = 1;
    switch (o) {
      case 's': which = optarg; break;
      case 'e': ok = !fg__parse_int(optarg, 1, 1000, &base.eval_every); break;
      case 'b': ok = !fg__parse_int(optarg, 1, 16, &base.preserve_n_best); break;
      case 'l': ok = !fg__parse_int(optarg, 1, 32, &base.save_total_limit); break;
      case 't': ok = !fg__parse_seconds(optarg, &base.threshold); break;
      case 'k': ok = !fg__parse_int(optarg, 1, 100000, &base.spike_step); break;
      case 'c': ok = !fg__parse_int(optarg, 1, 100000, &base.crash_step); break;
      default: return scn_usage_error(s, "unknown option '%s' (see --help)", argv[optind - 1]);
    }
    if (!ok) return scn_usage_error(s, "bad value '%s' for --%s", optarg, opts[idx].name);
  }
  if (optind < argc) return scn_usage_error(s, "unexpected argument '%s'", argv[optind]);
  int basic = !strcmp(which, "basic") || !strcmp(which, "all");
  int spike = !strcmp(which, "spike") || !strcmp(which, "all");
  if (!basic && !spike) return scn_usage_error(s, "--scenario must be basic, spike or all");
  if (base.crash_step && base.crash_step % base.eval_every)
    return scn_usage_error(s, "--crash-during-save %d is not a save step (a multiple of "
                           "--eval-every %d)", base.crash_step, base.eval_every);

  int rc = 0;
  if (basic) {
    params p = base;
    p.steps = scn_fault(s, "keep-all") ? 200 : 100; /* enough saves for the limit to matter */
    p.spike_step = 0;
    p.detector = 0;
    rc = train(s, "basic", p);
  }
  if (spike && rc == 0) {
    params p = base;
    p.steps = 150;
    p.detector = !scn_fault(s, "no-detector");
    rc = train(s, "spike", p);
  }
  if (s->rank == 0)
    printf("%s\n", s->failed ? "SOME ASSERTIONS FAILED" : "ALL ASSERTIONS PASSED");
  return rc;
}

const scenario scn_checkpoint = {
    .name = FG_SCENARIO_CHECKPOINT,
    .summary = "best-checkpoint preservation, save limits and divergence detection",
    .usage = "options:\n"
             "  --scenario basic|spike|all   which run (default all: basic, then spike)\n"
             "  --eval-every N               evaluate and save every N steps (default 25)\n"
             "  --preserve-n-best N          best checkpoints kept (default 2)\n"
             "  --save-total-limit N         checkpoints kept in all (default 3)\n"
             "  --threshold X                detector threshold (default 0.75)\n"
             "  --spike-step N               where spike injects the loss spike (default 75)\n"
             "  --crash-during-save STEP     rank 0 SIGKILLs itself halfway through saving STEP\n"
             "                               (after 2 of its 3 files, before the manifest)\n"
             "\n"
             "basic: 100 steps, no spike, detector off. spike: 150 steps, loss spike at\n"
             "--spike-step, dual-EMA divergence detector on; training must stop on it.\n"
             "Eval loss 5 * 0.98^step + 2.5 (8.5 + 0.05 per step from the spike on).\n"
             "Rank 0 writes <output-dir>/<basic|spike>/checkpoints/checkpoint-STEP/ (model.bin,\n"
             "metrics.json, detector.txt, manifest: name, size, FNV-1a 64 of each file) under\n"
             "a .tmp- name, fsyncs, renames; deletes the oldest beyond the limit, never a best.\n"
             "Halfway through each write every rank looks: nothing with a final name may be\n"
             "incomplete.\n"
             "\n"
             "Faults: delete-best (rank 0 deletes the best checkpoint), unsorted-best (the best\n"
             "list is not sorted), best-overflow (it keeps one too many), keep-all (nothing is\n"
             "deleted; basic runs 200 steps), no-detector (spike without the detector),\n"
             "diverge-ranks (the last rank sees an extra checkpoint), corrupt-detector (the\n"
             "saved detector state is off by one ulp), non-atomic (checkpoints are written in\n"
             "place, so the look halfway through each save finds a partial one; with\n"
             "--crash-during-save a partial checkpoint-STEP is left on disk).\n",
    .faults = faults,
    .run = run_checkpoint,
};

/* names.h - the scenarios' names: the one list fgscenario's scenarios (their .name), fgrun
 * (which hands a scenario name to fgscenario, launcher/program.c, and lists them in --help)
 * and fgmatrix (which checks its config's names) are built from. A pure list, no code of the
 * scenarios, so the launcher and the tools may include it.
 *
 * Each name is also accepted with '-' and '_' swapped (Forgather's spellings: build-sync,
 * checkpoint_integration): fg__scenario_name_eq. */
#ifndef FG_SCENARIOS_NAMES_H
#define FG_SCENARIOS_NAMES_H

#define FG_SCENARIO_CHECKPOINT "checkpoint-integration"
#define FG_SCENARIO_DISPATCHER "dataloader-dispatcher"
#define FG_SCENARIO_PIPELINE "pipeline-split"
#define FG_SCENARIO_BUILD_SYNC "build_sync"
#define FG_SCENARIO_ALL "all" /* every scenario in turn */

/* In the order `all` runs them, for initialisers: {FG_SCENARIO_NAMES}. */
#define FG_SCENARIO_NAMES \
  FG_SCENARIO_CHECKPOINT, FG_SCENARIO_DISPATCHER, FG_SCENARIO_PIPELINE, FG_SCENARIO_BUILD_SYNC
/* The same as one string for help texts. */
#define FG_SCENARIO_LIST                                                             \
  FG_SCENARIO_CHECKPOINT ", " FG_SCENARIO_DISPATCHER ", " FG_SCENARIO_PIPELINE ", " \
      FG_SCENARIO_BUILD_SYNC

/* a and b name the same scenario: equal once every '_' is read as '-'. */
static inline int fg__scenario_name_eq(const char *a, const char *b) {
  for (;; a++, b++) {
    char x = *a == '_' ? '-' : *a, y = *b == '_' ? '-' : *b;
    if (x != y) return 0;
    if (!x) return 1;
  }
}

#endif

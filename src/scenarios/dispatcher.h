/* dispatcher.h - what the dataloader-dispatcher's ranks report, and the judge
 * that reads every rank's report on rank 0. */
#ifndef FG_SCENARIOS_DISPATCHER_H
#define FG_SCENARIOS_DISPATCHER_H

#include <stdint.h>

#include "scenarios/scenario.h"

/* One rank's record, int64 fields: its mesh coordinates, whether its iteration saw end of
 * data, how many batches it received, how many values broke the pattern, then the first
 * token of each batch received (max_steps slots, -1 past the count). */
enum { REC_DP, REC_MP, REC_ENDED, REC_COUNT, REC_BAD, REC_TOKENS };

typedef struct dispatch_plan {
  int dp, mp;
  int num_batches; /* what each rank should receive */
  int max_steps;
} dispatch_plan;

static inline int dispatch_record_len(const dispatch_plan *p) { return REC_TOKENS + p->max_steps; }

/* Makes the checks from every rank's record (world rank order). Rank 0 calls it. */
void dispatcher_judge(scn *s, const dispatch_plan *p, const int64_t *records);

#endif

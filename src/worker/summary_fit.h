/*
 * summary_fit.h — a cycle summary cut to fit the worker's status slot.
 */
#ifndef RM_SUMMARY_FIT_H
#define RM_SUMMARY_FIT_H

#include "postgres.h"

#include "worker/worker_shared.h"

/*
 * A cycle summary (jsonb) as text for a buffer of WORKER_SUMMARY_LEN bytes:
 * as it is when it fits, otherwise still valid JSON, with every list cut to
 * what fits, "truncated": true and each list's full length under "counts".
 */
extern void worker_summary_fit(Datum summary, char *buffer);

#endif

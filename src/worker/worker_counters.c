/*
 * worker_counters.c — naming the worker's counters and writing them as JSON.
 */
#include "postgres.h"

#include "worker/worker_counters.h"

static const char *const guard_names[GUARD_OUTCOMES] = {
	[GUARD_RAN] = "ran",
	[GUARD_ANOTHER_CYCLE_RUNNING] = "another_cycle_running",
	[GUARD_ERROR] = "error",
};

int
cycle_outcome(CycleKind kind, const CycleSummary *summary)
{
	if (kind == CYCLE_GUARD)
	{
		if (summary == NULL)
			return GUARD_ERROR;
		return summary->ran ? GUARD_RAN : GUARD_ANOTHER_CYCLE_RUNNING;
	}
	return summary == NULL ? ENQUEUE_ERROR : (int) summary->stopped;
}

static const char *
enqueue_outcome_name(int outcome)
{
	return outcome == ENQUEUE_ERROR ? "error" : stop_reason_name((StopReason) outcome);
}

/* One JSON object of counters; the names are plain identifiers, never escaped. */
static void
append_object(StringInfo out, const int64 *counts, int n, const char *(*name) (int))
{
	appendStringInfoChar(out, '{');
	for (int i = 0; i < n; i++)
		appendStringInfo(out, "%s\"%s\": " INT64_FORMAT, i > 0 ? ", " : "", name(i), counts[i]);
	appendStringInfoChar(out, '}');
}

static const char *
guard_outcome_name(int outcome)
{
	return guard_names[outcome];
}

static const char *
answer_name(int counter)
{
	return answer_counter_name((AnswerCounter) counter);
}

void
worker_counters_cycles_json(const WorkerCounters *counters, StringInfo out)
{
	appendStringInfoString(out, "{\"guard\": ");
	append_object(out, counters->guard, GUARD_OUTCOMES, guard_outcome_name);
	appendStringInfoString(out, ", \"enqueue\": ");
	append_object(out, counters->enqueue, ENQUEUE_OUTCOMES, enqueue_outcome_name);
	appendStringInfoChar(out, '}');
}

void
worker_counters_answers_json(const WorkerCounters *counters, StringInfo out)
{
	append_object(out, counters->answers, ANSWER_COUNTERS, answer_name);
}

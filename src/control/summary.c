/*
 * summary.c — building cycle summaries.
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "guc.h"
#include "control/summary.h"

static const char *const list_keys[SL_COUNT] = {
	[SL_FINAL_IMPORTS] = "final_imports",
	[SL_RETRIED] = "retried",
	[SL_STARTED] = "started",
	[SL_FINISHED] = "finished",
	[SL_SKIPPED] = "skipped",
	[SL_ABORTED] = "aborted",
	[SL_CANCELED] = "canceled",
	[SL_MARKED] = "marked",
	[SL_LEFT_ALONE] = "left_alone",
	[SL_UNAVAILABLE] = "unavailable",
	[SL_NOT_READY] = "not_ready",
	[SL_ERRORS] = "errors",
};

static const char *const stop_names[STOP_COUNT] = {
	[STOP_NOTHING_TO_DO] = "nothing_to_do",
	[STOP_DISABLED] = "disabled",
	[STOP_RETRY_AFTER] = "retry_after",
	[STOP_AT_CAPACITY] = "at_capacity",
	[STOP_WAITING_TIME] = "waiting_time",
	[STOP_TOO_MANY_IMPORTS] = "too_many_imports",
	[STOP_REGISTRY_UNAVAILABLE] = "registry_unavailable",
	[STOP_ANOTHER_CYCLE_RUNNING] = "another_cycle_running",
};

static const char *const left_alone_names[LA_COUNT] = {
	[LA_RUNNING] = "running",
	[LA_REGISTRY_UNAVAILABLE] = "registry_unavailable",
	[LA_CANCEL_NOT_ACCEPTED] = "cancel_not_accepted",
	[LA_FAILURE_DISMISSED] = "failure_dismissed",
	[LA_CONFIRMATION_PENDING] = "confirmation_pending",
	[LA_STATE_CHANGED] = "state_changed",
};

const char *
stop_reason_name(StopReason reason)
{
	return (unsigned) reason < STOP_COUNT ? stop_names[reason] : "?";
}

/*
 * Which lists each kind of cycle reports: the guard never retries, starts
 * new work or passes a repository over; the enqueuer never cancels, marks
 * or leaves a step alone.
 */
static bool
list_reported(CycleKind kind, SummaryList list)
{
	if (kind == CYCLE_ENQUEUER)
		return list != SL_CANCELED && list != SL_MARKED && list != SL_LEFT_ALONE;
	return list != SL_RETRIED && list != SL_STARTED && list != SL_UNAVAILABLE &&
		list != SL_NOT_READY;
}

/* The key of an element's second member, or NULL when elements are paths. */
static const char *
detail_key(CycleKind kind, SummaryList list)
{
	if (list == SL_ERRORS)
		return "message";
	if (kind == CYCLE_ENQUEUER && (list == SL_FINISHED || list == SL_SKIPPED))
		return "reason";
	return NULL;
}

void
summary_init(CycleSummary *summary, CycleKind kind)
{
	memset(summary, 0, sizeof(*summary));
	summary->kind = kind;
	summary->ran = true;
	for (int i = 0; i < SL_COUNT; i++)
		initStringInfo(&summary->items[i]);
}

void
summary_due(TimestampTz *due, TimestampTz at)
{
	if (at != 0 && (*due == 0 || at < *due))
		*due = at;
}

void
summary_add(CycleSummary *summary, SummaryList list, const char *path, const char *detail)
{
	StringInfo	items = &summary->items[list];
	const char *key = detail_key(summary->kind, list);

	if (items->len > 0)
		appendStringInfoChar(items, ',');
	if (key == NULL)
		escape_json(items, path);
	else
	{
		appendStringInfoString(items, "{\"path\":");
		escape_json(items, path);
		appendStringInfo(items, ",\"%s\":", key);
		escape_json(items, detail ? detail : "");
		appendStringInfoChar(items, '}');
	}
	summary->counts[list]++;
}

void
summary_left_alone(CycleSummary *summary, const char *path, LeftAloneReason reason)
{
	summary_add(summary, SL_LEFT_ALONE, path, NULL);
	summary->left_alone_reasons[reason]++;
}

void
summary_state_changed(CycleSummary *summary, const char *path)
{
	summary_add(summary, SL_ERRORS, path, "state changed");
	summary->left_alone_reasons[LA_STATE_CHANGED]++;
}

/* An enqueuer's stop that only reports the pace the migration is held to. */
static bool
routine_stop(StopReason stopped)
{
	return stopped == STOP_NOTHING_TO_DO || stopped == STOP_DISABLED ||
		stopped == STOP_AT_CAPACITY || stopped == STOP_WAITING_TIME ||
		stopped == STOP_RETRY_AFTER;
}

bool
summary_is_routine(const CycleSummary *summary)
{
	/* A cycle that did not run says so: its caller may want to know why. */
	if (!summary->ran)
		return false;
	for (int i = 0; i < SL_COUNT; i++)
		if (i != SL_LEFT_ALONE && summary->counts[i] > 0)
			return false;
	if (summary->kind == CYCLE_ENQUEUER)
		return routine_stop(summary->stopped);
	/* Left alone only because the registry runs the steps, none long-running yet. */
	return summary->left_alone_reasons[LA_RUNNING] == summary->counts[SL_LEFT_ALONE];
}

/* The guard's "left_alone_reasons": every reason, with its count. */
static void
append_left_alone_reasons(StringInfo json, const CycleSummary *summary)
{
	appendStringInfoString(json, ",\"left_alone_reasons\":{");
	for (int i = 0; i < LA_COUNT; i++)
		appendStringInfo(json, "%s\"%s\":%d", i > 0 ? "," : "", left_alone_names[i],
						 summary->left_alone_reasons[i]);
	appendStringInfoChar(json, '}');
}

Datum
summary_to_jsonb(const CycleSummary *summary)
{
	StringInfoData json;

	initStringInfo(&json);
	appendStringInfo(&json, "{\"ran\":%s", summary->ran ? "true" : "false");
	if (summary->kind == CYCLE_ENQUEUER)
	{
		appendStringInfoString(&json, ",\"stopped\":");
		escape_json(&json, stop_reason_name(summary->stopped));
		if (summary->has_retry_after)
		{
			appendStringInfoString(&json, ",\"retry_after_until\":");
			escape_json(&json, timestamptz_to_str(summary->retry_after_until));
		}
	}
	else
	{
		appendStringInfo(&json, ",\"stale\":%d", summary->stale);
		append_left_alone_reasons(&json, summary);
	}
	for (int i = 0; i < SL_COUNT; i++)
		if (list_reported(summary->kind, (SummaryList) i))
			appendStringInfo(&json, ",\"%s\":[%s]", list_keys[i], summary->items[i].data);
	appendStringInfoChar(&json, '}');
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(json.data));
}

/* "; left_alone_reasons: running 2, state_changed 1": the guard's reasons that occurred. */
static void
append_left_alone_line(StringInfo line, const CycleSummary *summary)
{
	const char *separator = "; left_alone_reasons: ";

	for (int i = 0; i < LA_COUNT; i++)
	{
		if (summary->left_alone_reasons[i] == 0)
			continue;
		appendStringInfo(line, "%s%s %d", separator, left_alone_names[i],
						 summary->left_alone_reasons[i]);
		separator = ", ";
	}
}

/*
 * Whether a summary at this level reaches the server log. Up to LOG, elog
 * decides as for any message. Above it (info, notice, warning) the line
 * would also reach the client that ran the cycle (info whatever its
 * client_min_messages), which has the summary as its result already; it is
 * written only when log_min_messages lets it into the server log, and then
 * kept from the client (see server_log_only).
 */
static bool
reaches_server_log(int level)
{
	if (level <= LOG)
		return true;
	return log_min_messages != LOG && level >= log_min_messages;
}

static emit_log_hook_type hook_before_summary = NULL;

/* Installed only while a summary is written: the server log, not the client. */
static void
server_log_only(ErrorData *edata)
{
	edata->output_to_client = false;
	if (hook_before_summary)
		hook_before_summary(edata);
}

/* The summary line at its level, at its own severity in the server log only. */
static void
emit_summary_line(int level, const char *line)
{
	hook_before_summary = emit_log_hook;
	emit_log_hook = server_log_only;
	PG_TRY();
	{
		ereport(level, (errmsg("registry_migration %s", line)));
	}
	PG_FINALLY();
	{
		emit_log_hook = hook_before_summary;
	}
	PG_END_TRY();
}

void
summary_log(const CycleSummary *summary)
{
	StringInfoData line;
	int			level = summary_is_routine(summary) ? Min(DEBUG1, rm_log_level) : rm_log_level;

	if (!reaches_server_log(level))
		return;

	initStringInfo(&line);
	if (summary->kind == CYCLE_ENQUEUER)
		appendStringInfo(&line, "enqueuer cycle stopped: %s",
						 stop_reason_name(summary->stopped));
	else
		appendStringInfo(&line, "guard cycle: %d stale", summary->stale);
	if (!summary->ran)
		appendStringInfoString(&line, " (another cycle was running)");
	for (int i = 0; i < SL_COUNT; i++)
		if (list_reported(summary->kind, (SummaryList) i))
			appendStringInfo(&line, ", %s %d", list_keys[i], summary->counts[i]);
	if (summary->kind == CYCLE_GUARD)
		append_left_alone_line(&line, summary);
	emit_summary_line(level, line.data);
	pfree(line.data);
}

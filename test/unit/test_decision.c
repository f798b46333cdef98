/*
 * test_decision.c — the retry decision, checked against an expectation
 * written independently of decision.c (the rules as words, row by row).
 *
 * Every state is combined with every status the registry's import API may
 * report, with strings that must not be taken for one of them, and with
 * retry counts below, at and above the limit (max_retries = 0 included).
 */
#include "unit.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/decision.h"

static const struct
{
	MigrationState state;
	const char *name;
}			states[] = {
	{MS_DEFAULT, "default"},
	{MS_PRE_IMPORTING, "pre_importing"},
	{MS_PRE_IMPORT_DONE, "pre_import_done"},
	{MS_IMPORTING, "importing"},
	{MS_IMPORT_DONE, "import_done"},
	{MS_IMPORT_ABORTED, "import_aborted"},
	{MS_IMPORT_SKIPPED, "import_skipped"},
};

#define NSTATES (sizeof(states) / sizeof(states[0]))

/* The statuses the registry's import API may report, with their parsed value. */
static const struct
{
	const char *text;
	RegistryStatus status;
}			listed_statuses[] = {
	{"native", RS_NATIVE},
	{"pre_import_in_progress", RS_PRE_IMPORT_IN_PROGRESS},
	{"pre_import_complete", RS_PRE_IMPORT_COMPLETE},
	{"pre_import_failed", RS_PRE_IMPORT_FAILED},
	{"pre_import_canceled", RS_PRE_IMPORT_CANCELED},
	{"import_in_progress", RS_IMPORT_IN_PROGRESS},
	{"import_complete", RS_IMPORT_COMPLETE},
	{"import_failed", RS_IMPORT_FAILED},
	{"import_canceled", RS_IMPORT_CANCELED},
};

#define NLISTED (sizeof(listed_statuses) / sizeof(listed_statuses[0]))

/*
 * Strings that are not in the list: the comparison is exact and
 * case-sensitive, so near misses must be unknown too. NULL is handled
 * separately (it cannot sit in a list of strings to compare).
 */
static const char *const unlisted_statuses[] = {
	"error",
	"",
	"Native",
	"NATIVE",
	"pre_import_complete ",
	" native",
	"Pre_Import_Failed",
	"import",
	"pre_import",
	"import_completed",
	"unknown",
	"in_progress",
	"not_a_registry_status",
};

#define NUNLISTED (sizeof(unlisted_statuses) / sizeof(unlisted_statuses[0]))

/* The eleven possible decisions, with the enum value each must come from. */
static const struct
{
	RetryDecision decision;
	const char *name;
}			decision_names[] = {
	{RD_NONE, "none"},
	{RD_UNKNOWN, "unknown"},
	{RD_ABORT, "abort"},
	{RD_SKIP, "skip"},
	{RD_FINISH_IMPORT, "finish_import"},
	{RD_FINISH_IMPORT_NATIVE, "finish_import_native"},
	{RD_MARK_PRE_IMPORTING, "mark_pre_importing"},
	{RD_MARK_IMPORTING, "mark_importing"},
	{RD_START_IMPORT, "start_import"},
	{RD_RETRY_PRE_IMPORT, "retry_pre_import"},
	{RD_RETRY_IMPORT, "retry_import"},
};

#define NDECISIONS (sizeof(decision_names) / sizeof(decision_names[0]))

static bool
str_is(const char *s, const char *want)
{
	return s != NULL && strcmp(s, want) == 0;
}

/* True when word is one of the space-separated words of list. */
static bool
in_list(const char *word, const char *list)
{
	size_t		n = strlen(word);
	const char *p = list;

	if (n == 0)
		return false;			/* strstr would find "" everywhere, forever */
	while ((p = strstr(p, word)) != NULL)
	{
		bool		starts = p == list || p[-1] == ' ';
		bool		ends = p[n] == '\0' || p[n] == ' ';

		if (starts && ends)
			return true;
		p += n;
	}
	return false;
}

static bool
is_listed(const char *status)
{
	return status != NULL && in_list(status,
									 "native pre_import_in_progress pre_import_complete "
									 "pre_import_failed pre_import_canceled import_in_progress "
									 "import_complete import_failed import_canceled");
}

/* "any *_failed or *_canceled" of rows 11 to 14. */
static bool
is_failed_or_canceled(const char *status)
{
	return in_list(status, "pre_import_failed pre_import_canceled import_failed import_canceled");
}

/*
 * The decision table, transcribed row by row (rows 1 to 14): the first row
 * that matches wins. Works on names only, so it shares nothing with the
 * code under test. NULL means no row matched, which the table rules out.
 */
static const char *
expected_decision(const char *state, const char *status, int32_t retries, int32_t max_retries)
{
	if (in_list(state, "import_done import_skipped"))
		return "none";			/* 1 */
	if (!is_listed(status))
		return "unknown";		/* 2 */
	if (str_is(status, "native"))
		return "finish_import_native";	/* 3 */
	if (str_is(status, "pre_import_in_progress"))
		return str_is(state, "pre_importing") ? "none"	/* 4 */
			: "mark_pre_importing"; /* 5 */
	if (str_is(status, "import_in_progress"))
		return str_is(state, "importing") ? "none"	/* 6 */
			: "mark_importing"; /* 7 */
	if (str_is(status, "import_complete"))
		return "finish_import"; /* 8 */
	if (str_is(status, "pre_import_complete"))
	{
		if (in_list(state, "pre_importing pre_import_done import_aborted"))
			return "start_import";	/* 9 */
		if (in_list(state, "default importing"))
			return "none";		/* 10 */
		return NULL;
	}
	if (str_is(state, "import_aborted") &&
		in_list(status, "pre_import_failed pre_import_canceled"))
		return retries < max_retries ? "retry_pre_import" : "skip";	/* 11 */
	if (str_is(state, "import_aborted") &&
		in_list(status, "import_failed import_canceled"))
		return retries < max_retries ? "retry_import" : "skip"; /* 12 */
	if (in_list(state, "pre_importing pre_import_done importing") &&
		is_failed_or_canceled(status))
		return "abort";			/* 13 */
	if (str_is(state, "default") && is_failed_or_canceled(status))
		return "none";			/* 14 */
	return NULL;
}

/*
 * The same table drawn as a grid for the listed statuses, with retries
 * left (retries 0 of 3). A second, independent transcription: it checks
 * the row-by-row function above before that function checks the code.
 * Columns in the order of listed_statuses, rows in the order of states.
 */
static const char *const grid_with_retries_left[7][9] = {
	/* native, pre_in_progress, pre_complete, pre_failed, pre_canceled,
	 * in_progress, complete, failed, canceled */
	/* default */
	{"finish_import_native", "mark_pre_importing", "none", "none", "none",
	"mark_importing", "finish_import", "none", "none"},
	/* pre_importing */
	{"finish_import_native", "none", "start_import", "abort", "abort",
	"mark_importing", "finish_import", "abort", "abort"},
	/* pre_import_done */
	{"finish_import_native", "mark_pre_importing", "start_import", "abort", "abort",
	"mark_importing", "finish_import", "abort", "abort"},
	/* importing */
	{"finish_import_native", "mark_pre_importing", "none", "abort", "abort",
	"none", "finish_import", "abort", "abort"},
	/* import_done */
	{"none", "none", "none", "none", "none", "none", "none", "none", "none"},
	/* import_aborted */
	{"finish_import_native", "mark_pre_importing", "start_import", "retry_pre_import",
		"retry_pre_import", "mark_importing", "finish_import", "retry_import",
	"retry_import"},
	/* import_skipped */
	{"none", "none", "none", "none", "none", "none", "none", "none", "none"},
};

static void
check_grid_agrees_with_rows(void)
{
	for (size_t s = 0; s < NSTATES; s++)
		for (size_t t = 0; t < NLISTED; t++)
			CHECK_STR_EQ(expected_decision(states[s].name, listed_statuses[t].text, 0, 3),
						 grid_with_retries_left[s][t],
						 "expectation itself: state %s, status %s",
						 states[s].name, listed_statuses[t].text);
}

static void
check_status_parse(void)
{
	for (size_t i = 0; i < NLISTED; i++)
		CHECK_INT_EQ(registry_status_parse(listed_statuses[i].text), listed_statuses[i].status,
					 "status \"%s\"", listed_statuses[i].text);
	for (size_t i = 0; i < NUNLISTED; i++)
		CHECK_INT_EQ(registry_status_parse(unlisted_statuses[i]), RS_UNKNOWN,
					 "status \"%s\"", unlisted_statuses[i]);
	CHECK_INT_EQ(registry_status_parse(NULL), RS_UNKNOWN, "status NULL");
}

/* registry_status_parse_n on a heap copy of exactly len bytes, no NUL. */
static RegistryStatus
parse_exact(const char *text, size_t len)
{
	char	   *copy = malloc(len > 0 ? len : 1);
	RegistryStatus status;

	if (copy == NULL)
		abort();
	memcpy(copy, text, len);
	status = registry_status_parse_n(copy, len);
	free(copy);
	return status;
}

/* The length, not a NUL, ends the status: prefixes and longer runs are unknown. */
static void
check_status_parse_n(void)
{
	for (size_t i = 0; i < NLISTED; i++)
	{
		const char *text = listed_statuses[i].text;
		size_t		len = strlen(text);
		char		longer[64];

		CHECK_INT_EQ(parse_exact(text, len), listed_statuses[i].status, "\"%s\" by length", text);
		CHECK_INT_EQ(parse_exact(text, len - 1), RS_UNKNOWN, "\"%s\" less its last byte", text);
		snprintf(longer, sizeof(longer), "%sx", text);
		CHECK_INT_EQ(parse_exact(longer, len + 1), RS_UNKNOWN, "\"%s\" and one more byte", text);
		/* A NUL inside len is a byte that does not match. */
		CHECK_INT_EQ(parse_exact(text, len + 1), RS_UNKNOWN, "\"%s\" with its NUL", text);
	}
	for (size_t i = 0; i < NUNLISTED; i++)
		CHECK_INT_EQ(parse_exact(unlisted_statuses[i], strlen(unlisted_statuses[i])), RS_UNKNOWN,
					 "\"%s\" by length", unlisted_statuses[i]);
	CHECK_INT_EQ(parse_exact("", 0), RS_UNKNOWN, "empty by length");
}

static void
check_decision_names(void)
{
	for (size_t i = 0; i < NDECISIONS; i++)
		CHECK_STR_EQ(retry_decision_name(decision_names[i].decision), decision_names[i].name,
					 "decision %d", (int) decision_names[i].decision);
	/* No twelfth answer hides behind the eleven. */
	CHECK_INT_EQ(RD_COUNT, NDECISIONS, "number of decisions");
	CHECK_STR_EQ(retry_decision_name((RetryDecision) RD_COUNT), "?", "one past the last");
	CHECK_STR_EQ(retry_decision_name((RetryDecision) 1000), "?", "far out of range");
	CHECK_STR_EQ(retry_decision_name((RetryDecision) -1), "?", "negative");
}

/*
 * Retry counts around the limit: below, at and above it, for limits of 0
 * (every failure is final), 1, the default 3, and the largest int.
 */
static const struct
{
	int32_t		retries;
	int32_t		max_retries;
}			retry_cases[] = {
	{0, 0}, {1, 0}, {7, 0},
	{0, 1}, {1, 1}, {2, 1},
	{0, 3}, {2, 3}, {3, 3}, {4, 3}, {100, 3},
	{0, INT32_MAX}, {INT32_MAX - 1, INT32_MAX}, {INT32_MAX, INT32_MAX},
	{INT32_MAX, 0},
};

#define NRETRY_CASES (sizeof(retry_cases) / sizeof(retry_cases[0]))

/* One (state, status, retries) case: the code must give the expected name. */
static void
check_one(size_t s, const char *status, int32_t retries, int32_t max_retries)
{
	const char *want = expected_decision(states[s].name, status, retries, max_retries);
	RetryDecision got = decide_retry(states[s].state, registry_status_parse(status),
									 retries, max_retries);

	CHECK(want != NULL, "no row of the table matches state %s, status %s",
		  states[s].name, status ? status : "NULL");
	CHECK_STR_EQ(retry_decision_name(got), want,
				 "state %s, status %s%s%s, retries %d of %d", states[s].name,
				 status ? "\"" : "", status ? status : "NULL", status ? "\"" : "",
				 retries, max_retries);
}

static void
check_table(void)
{
	for (size_t s = 0; s < NSTATES; s++)
		for (size_t r = 0; r < NRETRY_CASES; r++)
		{
			int32_t		retries = retry_cases[r].retries;
			int32_t		max_retries = retry_cases[r].max_retries;

			for (size_t t = 0; t < NLISTED; t++)
				check_one(s, listed_statuses[t].text, retries, max_retries);
			for (size_t t = 0; t < NUNLISTED; t++)
				check_one(s, unlisted_statuses[t], retries, max_retries);
			check_one(s, NULL, retries, max_retries);
		}
}

/* A few rows spelled out, so a reader sees the retry limit at work. */
static void
check_retry_limit_examples(void)
{
	CHECK_STR_EQ(retry_decision_name(decide_retry(MS_IMPORT_ABORTED, RS_PRE_IMPORT_CANCELED, 2, 3)),
				 "retry_pre_import", "canceled is retried like failed");
	CHECK_STR_EQ(retry_decision_name(decide_retry(MS_IMPORT_ABORTED, RS_IMPORT_CANCELED, 3, 3)),
				 "skip", "at the limit");
	CHECK_STR_EQ(retry_decision_name(decide_retry(MS_IMPORT_ABORTED, RS_IMPORT_FAILED, 0, 0)),
				 "skip", "max_retries 0: never retried");
	CHECK_STR_EQ(retry_decision_name(decide_retry(MS_IMPORT_ABORTED, RS_IMPORT_FAILED, 0, 1)),
				 "retry_import", "max_retries 1, no retry yet");
	CHECK_STR_EQ(retry_decision_name(decide_retry(MS_IMPORT_SKIPPED, RS_UNKNOWN, 0, 3)),
				 "none", "final state before unknown status (row 1 before row 2)");
	CHECK_STR_EQ(retry_decision_name(decide_retry(MS_IMPORT_ABORTED, RS_UNKNOWN, 9, 3)),
				 "unknown", "unknown status does not look at the limit");
}

void
test_decision(void)
{
	check_grid_agrees_with_rows();
	check_status_parse();
	check_status_parse_n();
	check_decision_names();
	check_table();
	check_retry_limit_examples();
}

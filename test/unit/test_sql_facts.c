/*
 * test_sql_facts.c — the facts the install script and the C library both
 * hold, compared: the labels of the SQL enum types, the CHECK lists that
 * name states or causes, and the "in process" states of the progress view,
 * against the C name tables and predicates. A label added on one side only
 * fails here, before any server runs.
 *
 * The script is read from the repository root, where `make unitcheck` runs
 * the binary (or from test/unit, when the binary is run from there).
 */
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/states.h"
#include "core/transitions.h"

#define SCRIPT "registry_migration--1.1.sql"
#define MAX_LABELS 32
#define MAX_LABEL_LEN 64

typedef struct LabelList
{
	int			count;
	char		labels[MAX_LABELS][MAX_LABEL_LEN];
} LabelList;

static char *
read_script(void)
{
	static const char *const places[] = {SCRIPT, "../../" SCRIPT};

	for (size_t i = 0; i < sizeof(places) / sizeof(places[0]); i++)
	{
		FILE	   *f = fopen(places[i], "rb");
		char	   *text;
		long		size;

		if (f == NULL)
			continue;
		fseek(f, 0, SEEK_END);
		size = ftell(f);
		fseek(f, 0, SEEK_SET);
		text = calloc(1, (size_t) size + 1);
		if (text != NULL && fread(text, 1, (size_t) size, f) != (size_t) size)
		{
			free(text);
			text = NULL;
		}
		fclose(f);
		return text;
	}
	return NULL;
}

/* The quoted labels from start up to the first closing parenthesis. */
static void
labels_from(const char *start, LabelList *list)
{
	const char *p = start;

	list->count = 0;
	while (*p != '\0' && *p != ')')
	{
		const char *end;
		size_t		len;

		if (*p++ != '\'')
			continue;
		end = strchr(p, '\'');
		if (end == NULL)
			return;
		len = (size_t) (end - p);
		if (list->count < MAX_LABELS && len < MAX_LABEL_LEN)
		{
			memcpy(list->labels[list->count], p, len);
			list->labels[list->count][len] = '\0';
			list->count++;
		}
		p = end + 1;
	}
}

/* The labels of the list that follows anchor; false when anchor is missing. */
static bool
labels_after(const char *sql, const char *anchor, LabelList *list)
{
	const char *at = strstr(sql, anchor);

	list->count = 0;
	if (!CHECK(at != NULL, "the script contains \"%s\"", anchor))
		return false;
	labels_from(at + strlen(anchor), list);
	return true;
}

/* The labels of the last list opened by opener before anchor. */
static bool
labels_before(const char *sql, const char *opener, const char *anchor, LabelList *list)
{
	const char *end = strstr(sql, anchor);
	const char *last = NULL;

	list->count = 0;
	if (!CHECK(end != NULL, "the script contains \"%s\"", anchor))
		return false;
	for (const char *p = strstr(sql, opener); p != NULL && p < end; p = strstr(p + 1, opener))
		last = p;
	if (!CHECK(last != NULL, "\"%s\" opens a list before \"%s\"", opener, anchor))
		return false;
	labels_from(last + strlen(opener), list);
	return true;
}

/* The list must be exactly the C names given, in order. */
static void
check_same(const char *what, const LabelList *sql, const char *const *c_names, int c_count)
{
	CHECK_INT_EQ(sql->count, c_count, "%s: as many labels in SQL as in C", what);
	for (int i = 0; i < sql->count && i < c_count; i++)
		CHECK_STR_EQ(sql->labels[i], c_names[i], "%s: label %d", what, i + 1);
}

static void
check_enums(const char *sql)
{
	LabelList	list;
	const char *names[MAX_LABELS];

	if (labels_after(sql, "migration_state AS ENUM (", &list))
	{
		for (int i = 0; i < MS_COUNT; i++)
			names[i] = migration_state_name((MigrationState) i);
		check_same("migration_state", &list, names, MS_COUNT);
	}
	if (labels_after(sql, "skip_reason AS ENUM (", &list))
	{
		for (int i = 0; i < SR_COUNT; i++)
			names[i] = skip_reason_name((SkipReason) i);
		check_same("skip_reason", &list, names, SR_COUNT);
	}
	if (labels_after(sql, "CHECK (cause IN (", &list))
	{
		for (int i = 0; i < CAUSE_COUNT; i++)
			names[i] = event_cause_name((EventCause) i);
		check_same("events.cause", &list, names, CAUSE_COUNT);
	}
}

/* The states for which holds() is true, in enum order. */
static int
states_where(bool (*holds) (MigrationState), const char **names)
{
	int			n = 0;

	for (int i = 0; i < MS_COUNT; i++)
		if (holds((MigrationState) i))
			names[n++] = migration_state_name((MigrationState) i);
	return n;
}

static bool
abort_allowed(MigrationState state)
{
	return event_allowed(EV_ABORT, state);
}

static void
check_state_lists(const char *sql)
{
	LabelList	list;
	const char *names[MAX_LABELS];
	int			n;

	/* aborted_in_state records the state an abort left: one abort is allowed from. */
	if (labels_after(sql, "aborted_in_state IN (", &list))
	{
		n = states_where(abort_allowed, names);
		check_same("aborted_in_state_is_a_step", &list, names, n);
	}
	/* The progress view counts as in process what holds a slot in C. */
	if (labels_before(sql, "state IN (", "AS in_process", &list))
	{
		n = states_where(migration_state_in_process, names);
		check_same("progress.in_process", &list, names, n);
	}
}

/* The parser itself: it reads a list and stops at its end. */
static void
check_parser(void)
{
	LabelList	list;

	labels_from(" 'a', 'b_c') 'd'", &list);
	CHECK_INT_EQ(list.count, 2, "labels stop at the closing parenthesis");
	CHECK_STR_EQ(list.labels[1], "b_c", "second label");
}

void
test_sql_facts(void)
{
	char	   *sql = read_script();

	check_parser();
	if (!CHECK(sql != NULL, "%s is readable from the repository root or test/unit", SCRIPT))
		return;
	check_enums(sql);
	check_state_lists(sql);
	free(sql);
}

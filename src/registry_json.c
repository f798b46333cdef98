/*
 * registry_json.c — reading registry answers with the server's JSON lexer
 * (common/jsonapi.h), which reports malformed input as a return code
 * instead of an error, so a garbled answer can never abort a cycle.
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

#include "registry_json.h"

/* Follows one top-level member of an object through the parse. */
typedef struct MemberWatch
{
	const char *name;			/* the member we look for */
	int			depth;			/* nesting depth of the current position */
	bool		top_is_object;
	bool		in_member;		/* the current top-level member is ours */
	char	   *string_value;	/* status: its value when a string */
	bool		is_array;		/* tags: the member is an array */
	bool		is_null;		/* tags: the member is null */
	int64		elements;		/* tags: elements of that array */
} MemberWatch;

static void
on_object_start(void *state)
{
	MemberWatch *w = state;

	if (w->depth == 0)
		w->top_is_object = true;
	w->depth++;
}

static void
on_array_start(void *state)
{
	MemberWatch *w = state;

	if (w->depth == 1 && w->in_member)
		w->is_array = true;
	w->depth++;
}

static void
on_struct_end(void *state)
{
	((MemberWatch *) state)->depth--;
}

static void
on_field_start(void *state, char *fname, bool isnull)
{
	MemberWatch *w = state;

	if (w->depth != 1)
		return;
	w->in_member = strcmp(fname, w->name) == 0;
	if (w->in_member)
	{
		/* A repeated member: the last one counts, as in jsonb. */
		w->string_value = NULL;
		w->is_array = false;
		w->is_null = isnull;
		w->elements = 0;
	}
}

static void
on_field_end(void *state, char *fname, bool isnull)
{
	MemberWatch *w = state;

	if (w->depth == 1)
		w->in_member = false;
}

static void
on_element_start(void *state, bool isnull)
{
	MemberWatch *w = state;

	if (w->depth == 2 && w->in_member && w->is_array)
		w->elements++;
}

static void
on_scalar(void *state, char *token, JsonTokenType type)
{
	MemberWatch *w = state;

	if (w->depth == 1 && w->in_member && type == JSON_TOKEN_STRING)
		w->string_value = token;
}

/* Parse body, watching member name; false when it is not a JSON object. */
static bool
watch_member(const char *body, size_t len, MemberWatch *w)
{
	JsonSemAction sem = {0};
	JsonLexContext *lex;

	if (len > PG_INT32_MAX || !pg_verifymbstr(body, (int) len, true))
		return false;
	sem.semstate = w;
	sem.object_start = on_object_start;
	sem.object_end = on_struct_end;
	sem.array_start = on_array_start;
	sem.array_end = on_struct_end;
	sem.object_field_start = on_field_start;
	sem.object_field_end = on_field_end;
	sem.array_element_start = on_element_start;
	sem.scalar = on_scalar;
	lex = makeJsonLexContextCstringLen(unconstify(char *, body), (int) len,
									  GetDatabaseEncoding(), true);
	return pg_parse_json(lex, &sem) == JSON_SUCCESS && w->top_is_object;
}

char *
json_status_member(const char *body, size_t len)
{
	MemberWatch w = {.name = "status"};

	if (!watch_member(body, len, &w))
		return NULL;
	return w.string_value;
}

int64
json_tags_count(const char *body, size_t len)
{
	MemberWatch w = {.name = "tags"};

	if (!watch_member(body, len, &w))
		return -1;
	if (w.is_array)
		return w.elements;
	return w.is_null ? 0 : -1;
}

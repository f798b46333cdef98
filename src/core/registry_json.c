/*
 * registry_json.c — reads one member of a registry answer's top-level
 * object, after checking the whole body against the JSON grammar.
 *
 * One pass over the body checks its structure and watches one member of the
 * top-level object; the tokens inside are read by json_scan.c. Nesting is
 * followed with an explicit stack of JSON_MAX_DEPTH entries, not by
 * recursion, so no body can exhaust the stack; memory use is fixed, whatever
 * the body's size.
 */
#include "core/registry_json.h"

#include <string.h>

#include "core/json_scan.h"

typedef enum JsonKind
{
	JSON_ABSENT,
	JSON_NULL,
	JSON_STRING,
	JSON_ARRAY,
	JSON_OTHER
} JsonKind;

/* The watched member, as its last occurrence left it. */
typedef struct JsonMember
{
	JsonKind	kind;
	char		string[REGISTRY_STATUS_MAX + 1];	/* a string that fits */
	bool		string_fits;
	int64_t		elements;		/* of an array */
	/* the watched inner member of the array's first element, when one is watched */
	JsonKind	inner_kind;
	char		inner_string[REGISTRY_STATUS_MAX + 1];
	bool		inner_fits;
} JsonMember;

typedef struct Reader
{
	JsonCursor	in;
	int			depth;
	unsigned char containers[JSON_MAX_DEPTH];	/* '{' or '[' of each open container */
	const char *member;			/* name of the watched top-level member */
	bool		in_member;		/* reading the watched member's value */
	/* a member of the first element (an object) of the watched array, or NULL */
	const char *inner;
	bool		in_inner;		/* reading that inner member's value */
	JsonMember *found;
} Reader;

/* Whether the value starting now is the watched member's own value. */
static bool
at_member_value(const Reader *r)
{
	return r->in_member && r->depth == 1;
}

/*
 * Whether the value starting now is the watched inner member's: at depth 3,
 * inside the first element of the watched member's array.
 */
static bool
at_inner_value(const Reader *r)
{
	return r->in_member && r->in_inner && r->depth == 3;
}

/* A string, number, true, false or null; notes the watched member's. */
static bool
read_scalar(Reader *r)
{
	JsonMember *found = r->found;
	StringSink	sink = {0};
	bool		watched = at_member_value(r);
	bool		inner = at_inner_value(r);

	if (*r->in.p == '"')
	{
		if (watched)
		{
			sink = (StringSink) {.buf = found->string, .cap = REGISTRY_STATUS_MAX, .fits = true};
			found->string[0] = '\0';
		}
		else if (inner)
		{
			sink = (StringSink) {.buf = found->inner_string, .cap = REGISTRY_STATUS_MAX, .fits = true};
			found->inner_string[0] = '\0';
		}
		if (!json_read_string(&r->in, &sink))
			return false;
		if (watched)
		{
			found->kind = JSON_STRING;
			found->string_fits = sink.fits;
		}
		else if (inner)
		{
			found->inner_kind = JSON_STRING;
			found->inner_fits = sink.fits;
		}
		return true;
	}
	if (*r->in.p == 'n')
	{
		if (watched)
			found->kind = JSON_NULL;
		else if (inner)
			found->inner_kind = JSON_NULL;
		return json_read_literal(&r->in, "null");
	}
	if (watched)
		found->kind = JSON_OTHER;
	else if (inner)
		found->inner_kind = JSON_OTHER;
	if (*r->in.p == 't')
		return json_read_literal(&r->in, "true");
	if (*r->in.p == 'f')
		return json_read_literal(&r->in, "false");
	return json_read_number(&r->in);
}

/*
 * Whether a member name read now belongs to the first element of the
 * watched array, when an inner member is watched.
 */
static bool
in_first_element(const Reader *r)
{
	return r->inner != NULL && r->in_member && r->depth == 3 &&
		r->found->kind == JSON_ARRAY && r->found->elements == 1 && r->containers[2] == '{';
}

/*
 * A member name and its colon; at the top level, and in the first element
 * of the watched array, it says whether to watch the value.
 */
static bool
read_member_name(Reader *r)
{
	char		name[REGISTRY_STATUS_MAX + 1];
	StringSink	sink = {.buf = name, .cap = REGISTRY_STATUS_MAX, .fits = true};
	bool		first_element = in_first_element(r);

	name[0] = '\0';
	json_skip_whitespace(&r->in);
	if (r->in.p >= r->in.end || *r->in.p != '"' ||
		!json_read_string(&r->in, r->depth == 1 || first_element ? &sink : NULL))
		return false;
	if (r->depth == 1)
	{
		/* A repeated member: the last one counts, as in jsonb. */
		r->in_member = sink.fits && strcmp(name, r->member) == 0;
		r->in_inner = false;
		if (r->in_member)
			memset(r->found, 0, sizeof(*r->found));
	}
	else if (first_element)
	{
		r->in_inner = sink.fits && strcmp(name, r->inner) == 0;
		if (r->in_inner)
		{
			r->found->inner_kind = JSON_ABSENT;
			r->found->inner_string[0] = '\0';
			r->found->inner_fits = false;
		}
	}
	json_skip_whitespace(&r->in);
	if (r->in.p >= r->in.end || *r->in.p != ':')
		return false;
	r->in.p++;
	return true;
}

/* Counts the elements of the watched member's array as they start. */
static void
note_element(Reader *r)
{
	if (r->in_member && r->depth == 2 && r->found->kind == JSON_ARRAY)
		r->found->elements++;
	/* Only the first element's inner member is watched. */
	r->in_inner = false;
}

static bool
open_container(Reader *r)
{
	unsigned char c = *r->in.p;

	if (r->depth >= JSON_MAX_DEPTH)
		return false;
	if (at_member_value(r))
		r->found->kind = c == '[' ? JSON_ARRAY : JSON_OTHER;
	else if (at_inner_value(r))
		r->found->inner_kind = JSON_OTHER;
	r->containers[r->depth++] = c;
	r->in.p++;
	return true;
}

static unsigned char
closing_of_innermost(const Reader *r)
{
	return r->containers[r->depth - 1] == '{' ? '}' : ']';
}

/* After "{" or "[": closes an empty container, or reads what starts the first entry. */
static bool
begin_entries(Reader *r, bool *closed)
{
	json_skip_whitespace(&r->in);
	*closed = r->in.p < r->in.end && *r->in.p == closing_of_innermost(r);
	if (*closed)
	{
		r->in.p++;
		r->depth--;
		return true;
	}
	if (r->containers[r->depth - 1] == '{')
		return read_member_name(r);
	note_element(r);
	return true;
}

/* After a value inside a container: "," and the next entry's start, or the close. */
static bool
after_entry(Reader *r, bool *closed)
{
	*closed = false;
	if (r->in.p >= r->in.end)
		return false;
	if (*r->in.p == closing_of_innermost(r))
	{
		r->in.p++;
		r->depth--;
		*closed = true;
		return true;
	}
	if (*r->in.p != ',')
		return false;
	r->in.p++;
	if (r->containers[r->depth - 1] == '{')
		return read_member_name(r);
	note_element(r);
	return true;
}

/* The whole body: exactly one object, nothing but whitespace after it. */
static bool
read_document(Reader *r)
{
	bool		want_value = true;

	json_skip_whitespace(&r->in);
	if (r->in.p >= r->in.end || *r->in.p != '{')
		return false;
	for (;;)
	{
		bool		closed;

		json_skip_whitespace(&r->in);
		if (!want_value)
		{
			if (r->depth == 0)
				return r->in.p == r->in.end;
			if (!after_entry(r, &closed))
				return false;
			want_value = !closed;
			continue;
		}
		if (r->in.p >= r->in.end)
			return false;
		if (*r->in.p == '{' || *r->in.p == '[')
		{
			if (!open_container(r) || !begin_entries(r, &closed))
				return false;
			want_value = !closed;
			continue;
		}
		if (!read_scalar(r))
			return false;
		want_value = false;
	}
}

static bool
read_member(const char *body, size_t len, const char *member, const char *inner,
			JsonMember *found)
{
	Reader		r = {0};

	memset(found, 0, sizeof(*found));
	if (body == NULL)
		return false;
	r.in.p = (const unsigned char *) body;
	r.in.end = r.in.p + len;
	r.member = member;
	r.inner = inner;
	r.found = found;
	return read_document(&r);
}

bool
json_status_member(const char *body, size_t len, char out[REGISTRY_STATUS_MAX + 1])
{
	JsonMember	found;

	out[0] = '\0';
	if (!read_member(body, len, "status", NULL, &found) ||
		found.kind != JSON_STRING || !found.string_fits)
		return false;
	memcpy(out, found.string, strlen(found.string) + 1);
	return true;
}

int64_t
json_tags_count(const char *body, size_t len)
{
	JsonMember	found;

	if (!read_member(body, len, "tags", NULL, &found))
		return -1;
	if (found.kind == JSON_ARRAY)
		return found.elements;
	return found.kind == JSON_NULL ? 0 : -1;
}

bool
json_first_error_code(const char *body, size_t len, char out[REGISTRY_STATUS_MAX + 1])
{
	JsonMember	found;

	out[0] = '\0';
	if (!read_member(body, len, "errors", "code", &found) ||
		found.kind != JSON_ARRAY || found.elements < 1 ||
		found.inner_kind != JSON_STRING || !found.inner_fits)
		return false;
	memcpy(out, found.inner_string, strlen(found.inner_string) + 1);
	return true;
}

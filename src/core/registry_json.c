/*
 * registry_json.c — a strict, iterative JSON reader for registry answers.
 *
 * One pass over the body checks it against the RFC 8259 grammar and
 * watches one member of the top-level object. Nesting is followed with an
 * explicit stack of JSON_MAX_DEPTH entries, not by recursion, so no body
 * can exhaust the stack; memory use is fixed, whatever the body's size.
 *
 * Stricter than the RFC where a registry has no reason to differ and a
 * difference would only serve to confuse another reader: a NUL byte, or
 * \u0000, anywhere makes the body unusable, and so do unpaired surrogate
 * escapes. Invalid UTF-8 (overlong forms, encoded surrogates, code points
 * above U+10FFFF) is refused as the RFC requires.
 */
#include "core/registry_json.h"

#include <string.h>

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
} JsonMember;

/* A bounded copy of a string's decoded value. */
typedef struct StringSink
{
	char	   *buf;			/* NULL: only validate */
	size_t		cap;			/* bytes buf may hold, without the NUL */
	size_t		len;
	bool		fits;
} StringSink;

typedef struct Reader
{
	const unsigned char *p;
	const unsigned char *end;
	int			depth;
	unsigned char containers[JSON_MAX_DEPTH];	/* '{' or '[' of each open container */
	const char *member;			/* name of the watched top-level member */
	bool		in_member;		/* reading the watched member's value */
	JsonMember *found;
} Reader;

static void
skip_whitespace(Reader *r)
{
	while (r->p < r->end &&
		   (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static void
sink_append(StringSink *sink, const unsigned char *bytes, size_t n)
{
	if (sink == NULL || sink->buf == NULL || !sink->fits)
		return;
	if (sink->len + n > sink->cap)
	{
		sink->fits = false;
		return;
	}
	memcpy(sink->buf + sink->len, bytes, n);
	sink->len += n;
	sink->buf[sink->len] = '\0';
}

static int
hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Four hex digits after "\u"; -1 when they are not there. */
static long
read_hex4(Reader *r)
{
	long		value = 0;

	if (r->end - r->p < 4)
		return -1;
	for (int i = 0; i < 4; i++)
	{
		int			digit = hex_value(r->p[i]);

		if (digit < 0)
			return -1;
		value = value * 16 + digit;
	}
	r->p += 4;
	return value;
}

static size_t
encode_utf8(unsigned long cp, unsigned char out[4])
{
	if (cp < 0x80)
	{
		out[0] = (unsigned char) cp;
		return 1;
	}
	if (cp < 0x800)
	{
		out[0] = (unsigned char) (0xC0 | (cp >> 6));
		out[1] = (unsigned char) (0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000)
	{
		out[0] = (unsigned char) (0xE0 | (cp >> 12));
		out[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
		out[2] = (unsigned char) (0x80 | (cp & 0x3F));
		return 3;
	}
	out[0] = (unsigned char) (0xF0 | (cp >> 18));
	out[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3F));
	out[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3F));
	out[3] = (unsigned char) (0x80 | (cp & 0x3F));
	return 4;
}

/*
 * The code point of a \u escape (r->p just after the "u"), pairing a high
 * surrogate with the low one that must follow it. -1 when invalid, when
 * a surrogate is unpaired, or for U+0000.
 */
static long
read_unicode_escape(Reader *r)
{
	long		cp = read_hex4(r);
	long		low;

	if (cp <= 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
		return -1;
	if (cp < 0xD800 || cp > 0xDBFF)
		return cp;
	if (r->end - r->p < 2 || r->p[0] != '\\' || r->p[1] != 'u')
		return -1;
	r->p += 2;
	low = read_hex4(r);
	if (low < 0xDC00 || low > 0xDFFF)
		return -1;
	return 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
}

/* One escape sequence (r->p on the backslash); false when invalid. */
static bool
read_escape(Reader *r, StringSink *sink)
{
	static const char from[] = "\"\\/bfnrt";
	static const char to[] = "\"\\/\b\f\n\r\t";
	unsigned char utf8[4];
	const char *simple;
	long		cp;

	if (r->end - r->p < 2)
		return false;
	r->p++;
	if (*r->p != 'u')
	{
		simple = memchr(from, *r->p, sizeof(from) - 1);
		if (simple == NULL)
			return false;
		utf8[0] = (unsigned char) to[simple - from];
		sink_append(sink, utf8, 1);
		r->p++;
		return true;
	}
	r->p++;
	cp = read_unicode_escape(r);
	if (cp < 0)
		return false;
	sink_append(sink, utf8, encode_utf8((unsigned long) cp, utf8));
	return true;
}

/*
 * Length of the well-formed UTF-8 sequence at s (RFC 3629, table 3-7 of
 * the Unicode standard), or 0 when it is not one.
 */
static size_t
utf8_sequence_length(const unsigned char *s, size_t avail)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80;
	unsigned char hi = 0xBF;
	size_t		n;

	if (c >= 0xC2 && c <= 0xDF)
		n = 2;
	else if (c >= 0xE0 && c <= 0xEF)
		n = 3;
	else if (c >= 0xF0 && c <= 0xF4)
		n = 4;
	else
		return 0;				/* 0x80..0xC1 (continuation or overlong), 0xF5.. */
	/* The second byte's range rules out overlong forms, surrogates, > U+10FFFF. */
	if (c == 0xE0)
		lo = 0xA0;
	else if (c == 0xED)
		hi = 0x9F;
	else if (c == 0xF0)
		lo = 0x90;
	else if (c == 0xF4)
		hi = 0x8F;
	if (avail < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return n;
}

/* A string (r->p on its opening quote), decoded into sink if any. */
static bool
read_string(Reader *r, StringSink *sink)
{
	r->p++;
	while (r->p < r->end)
	{
		unsigned char c = *r->p;
		size_t		n;

		if (c == '"')
		{
			r->p++;
			return true;
		}
		if (c == '\\')
		{
			if (!read_escape(r, sink))
				return false;
			continue;
		}
		if (c < 0x20)
			return false;		/* control characters and NUL must be escaped */
		n = c < 0x80 ? 1 : utf8_sequence_length(r->p, (size_t) (r->end - r->p));
		if (n == 0)
			return false;
		sink_append(sink, r->p, n);
		r->p += n;
	}
	return false;				/* unterminated */
}

static bool
is_digit(const Reader *r)
{
	return r->p < r->end && *r->p >= '0' && *r->p <= '9';
}

static void
skip_digits(Reader *r)
{
	while (is_digit(r))
		r->p++;
}

/* -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?; its value is never needed. */
static bool
read_number(Reader *r)
{
	if (r->p < r->end && *r->p == '-')
		r->p++;
	if (!is_digit(r))
		return false;
	if (*r->p == '0')
		r->p++;
	else
		skip_digits(r);
	if (r->p < r->end && *r->p == '.')
	{
		r->p++;
		if (!is_digit(r))
			return false;
		skip_digits(r);
	}
	if (r->p < r->end && (*r->p == 'e' || *r->p == 'E'))
	{
		r->p++;
		if (r->p < r->end && (*r->p == '+' || *r->p == '-'))
			r->p++;
		if (!is_digit(r))
			return false;
		skip_digits(r);
	}
	return true;
}

static bool
read_literal(Reader *r, const char *word)
{
	size_t		n = strlen(word);

	if ((size_t) (r->end - r->p) < n || memcmp(r->p, word, n) != 0)
		return false;
	r->p += n;
	return true;
}

/* Whether the value starting now is the watched member's own value. */
static bool
at_member_value(const Reader *r)
{
	return r->in_member && r->depth == 1;
}

/* A string, number, true, false or null; notes the watched member's. */
static bool
read_scalar(Reader *r)
{
	JsonMember *found = r->found;
	StringSink	sink = {0};
	bool		watched = at_member_value(r);

	if (*r->p == '"')
	{
		if (watched)
		{
			sink = (StringSink) {.buf = found->string, .cap = REGISTRY_STATUS_MAX, .fits = true};
			found->string[0] = '\0';
		}
		if (!read_string(r, &sink))
			return false;
		if (watched)
		{
			found->kind = JSON_STRING;
			found->string_fits = sink.fits;
		}
		return true;
	}
	if (*r->p == 'n')
	{
		if (watched)
			found->kind = JSON_NULL;
		return read_literal(r, "null");
	}
	if (watched)
		found->kind = JSON_OTHER;
	if (*r->p == 't')
		return read_literal(r, "true");
	if (*r->p == 'f')
		return read_literal(r, "false");
	return read_number(r);
}

/* A member name and its colon; at the top level it says whether to watch the value. */
static bool
read_member_name(Reader *r)
{
	char		name[REGISTRY_STATUS_MAX + 1];
	StringSink	sink = {.buf = name, .cap = REGISTRY_STATUS_MAX, .fits = true};

	name[0] = '\0';
	skip_whitespace(r);
	if (r->p >= r->end || *r->p != '"' || !read_string(r, r->depth == 1 ? &sink : NULL))
		return false;
	if (r->depth == 1)
	{
		/* A repeated member: the last one counts, as in jsonb. */
		r->in_member = sink.fits && strcmp(name, r->member) == 0;
		if (r->in_member)
			memset(r->found, 0, sizeof(*r->found));
	}
	skip_whitespace(r);
	if (r->p >= r->end || *r->p != ':')
		return false;
	r->p++;
	return true;
}

/* Counts the elements of the watched member's array as they start. */
static void
note_element(Reader *r)
{
	if (r->in_member && r->depth == 2 && r->found->kind == JSON_ARRAY)
		r->found->elements++;
}

static bool
open_container(Reader *r)
{
	unsigned char c = *r->p;

	if (r->depth >= JSON_MAX_DEPTH)
		return false;
	if (at_member_value(r))
		r->found->kind = c == '[' ? JSON_ARRAY : JSON_OTHER;
	r->containers[r->depth++] = c;
	r->p++;
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
	skip_whitespace(r);
	*closed = r->p < r->end && *r->p == closing_of_innermost(r);
	if (*closed)
	{
		r->p++;
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
	if (r->p >= r->end)
		return false;
	if (*r->p == closing_of_innermost(r))
	{
		r->p++;
		r->depth--;
		*closed = true;
		return true;
	}
	if (*r->p != ',')
		return false;
	r->p++;
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

	skip_whitespace(r);
	if (r->p >= r->end || *r->p != '{')
		return false;
	for (;;)
	{
		bool		closed;

		skip_whitespace(r);
		if (!want_value)
		{
			if (r->depth == 0)
				return r->p == r->end;
			if (!after_entry(r, &closed))
				return false;
			want_value = !closed;
			continue;
		}
		if (r->p >= r->end)
			return false;
		if (*r->p == '{' || *r->p == '[')
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
read_member(const char *body, size_t len, const char *member, JsonMember *found)
{
	Reader		r = {0};

	memset(found, 0, sizeof(*found));
	if (body == NULL)
		return false;
	r.p = (const unsigned char *) body;
	r.end = r.p + len;
	r.member = member;
	r.found = found;
	return read_document(&r);
}

bool
json_status_member(const char *body, size_t len, char out[REGISTRY_STATUS_MAX + 1])
{
	JsonMember	found;

	out[0] = '\0';
	if (!read_member(body, len, "status", &found) ||
		found.kind != JSON_STRING || !found.string_fits)
		return false;
	memcpy(out, found.string, strlen(found.string) + 1);
	return true;
}

int64_t
json_tags_count(const char *body, size_t len)
{
	JsonMember	found;

	if (!read_member(body, len, "tags", &found))
		return -1;
	if (found.kind == JSON_ARRAY)
		return found.elements;
	return found.kind == JSON_NULL ? 0 : -1;
}

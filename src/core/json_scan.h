/*
 * json_scan.h — the tokens of JSON (strings, numbers, literals) read
 * strictly from a byte range, for the registry answer reader.
 *
 * Pure C, internal to src/core: registry_json.c walks the structure and
 * uses these for everything inside it.
 */
#ifndef RM_JSON_SCAN_H
#define RM_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>

/* The bytes not read yet. */
typedef struct JsonCursor
{
	const unsigned char *p;
	const unsigned char *end;
} JsonCursor;

/* A bounded copy of a string's decoded value. */
typedef struct StringSink
{
	char	   *buf;			/* NULL: only validate */
	size_t		cap;			/* bytes buf may hold, without the NUL */
	size_t		len;
	bool		fits;			/* false once the value outgrew cap: buf holds a prefix */
} StringSink;

/* Skip JSON whitespace (space, tab, line feed, carriage return). */
extern void json_skip_whitespace(JsonCursor *c);

/*
 * A string (c->p on its opening quote), decoded into sink when sink is not
 * NULL. False for anything the reader refuses: a raw control character or
 * NUL, an invalid escape, \u0000, an unpaired surrogate, invalid UTF-8, or
 * no closing quote.
 */
extern bool json_read_string(JsonCursor *c, StringSink *sink);

/* A number of the JSON grammar; its value is never needed, only its form. */
extern bool json_read_number(JsonCursor *c);

/* Exactly word (true, false or null). */
extern bool json_read_literal(JsonCursor *c, const char *word);

#endif

/*
 * json_scan.c — the tokens of JSON, read strictly.
 *
 * Stricter than RFC 8259 where a registry has no reason to differ and a
 * difference would only serve to confuse another reader: a NUL byte, or
 * \u0000, anywhere makes the body unusable, and so do unpaired surrogate
 * escapes. Invalid UTF-8 (overlong forms, encoded surrogates, code points
 * above U+10FFFF) is refused as the RFC requires.
 */
#include "core/json_scan.h"

#include <string.h>

void
json_skip_whitespace(JsonCursor *c)
{
	while (c->p < c->end &&
		   (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
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
read_hex4(JsonCursor *c)
{
	long		value = 0;

	if (c->end - c->p < 4)
		return -1;
	for (int i = 0; i < 4; i++)
	{
		int			digit = hex_value(c->p[i]);

		if (digit < 0)
			return -1;
		value = value * 16 + digit;
	}
	c->p += 4;
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
 * The code point of a \u escape (c->p just after the "u"), pairing a high
 * surrogate with the low one that must follow it. -1 when invalid, when
 * a surrogate is unpaired, or for U+0000.
 */
static long
read_unicode_escape(JsonCursor *c)
{
	long		cp = read_hex4(c);
	long		low;

	if (cp <= 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
		return -1;
	if (cp < 0xD800 || cp > 0xDBFF)
		return cp;
	if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u')
		return -1;
	c->p += 2;
	low = read_hex4(c);
	if (low < 0xDC00 || low > 0xDFFF)
		return -1;
	return 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
}

/* One escape sequence (c->p on the backslash); false when invalid. */
static bool
read_escape(JsonCursor *c, StringSink *sink)
{
	static const char from[] = "\"\\/bfnrt";
	static const char to[] = "\"\\/\b\f\n\r\t";
	unsigned char utf8[4];
	const char *simple;
	long		cp;

	if (c->end - c->p < 2)
		return false;
	c->p++;
	if (*c->p != 'u')
	{
		simple = memchr(from, *c->p, sizeof(from) - 1);
		if (simple == NULL)
			return false;
		utf8[0] = (unsigned char) to[simple - from];
		sink_append(sink, utf8, 1);
		c->p++;
		return true;
	}
	c->p++;
	cp = read_unicode_escape(c);
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

bool
json_read_string(JsonCursor *c, StringSink *sink)
{
	c->p++;
	while (c->p < c->end)
	{
		unsigned char byte = *c->p;
		size_t		n;

		if (byte == '"')
		{
			c->p++;
			return true;
		}
		if (byte == '\\')
		{
			if (!read_escape(c, sink))
				return false;
			continue;
		}
		if (byte < 0x20)
			return false;		/* control characters and NUL must be escaped */
		n = byte < 0x80 ? 1 : utf8_sequence_length(c->p, (size_t) (c->end - c->p));
		if (n == 0)
			return false;
		sink_append(sink, c->p, n);
		c->p += n;
	}
	return false;				/* unterminated */
}

static bool
is_digit(const JsonCursor *c)
{
	return c->p < c->end && *c->p >= '0' && *c->p <= '9';
}

static void
skip_digits(JsonCursor *c)
{
	while (is_digit(c))
		c->p++;
}

/* -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)? */
bool
json_read_number(JsonCursor *c)
{
	if (c->p < c->end && *c->p == '-')
		c->p++;
	if (!is_digit(c))
		return false;
	if (*c->p == '0')
		c->p++;
	else
		skip_digits(c);
	if (c->p < c->end && *c->p == '.')
	{
		c->p++;
		if (!is_digit(c))
			return false;
		skip_digits(c);
	}
	if (c->p < c->end && (*c->p == 'e' || *c->p == 'E'))
	{
		c->p++;
		if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
			c->p++;
		if (!is_digit(c))
			return false;
		skip_digits(c);
	}
	return true;
}

bool
json_read_literal(JsonCursor *c, const char *word)
{
	size_t		n = strlen(word);

	if ((size_t) (c->end - c->p) < n || memcmp(c->p, word, n) != 0)
		return false;
	c->p += n;
	return true;
}

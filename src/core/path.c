/*
 * path.c — the repository path grammar:
 *
 *   path      := component ( "/" component )*
 *   component := alnum+ ( separator alnum+ )*
 *   separator := "." | "_" | "__" | "-"+
 *   alnum     := [a-z0-9]
 *
 * at most 255 bytes. The same grammar is also a CHECK constraint (a
 * regular expression) in the install script; the regression test "paths"
 * checks that both accept and refuse the same paths.
 */
#include "core/path.h"

#include <stdio.h>

static bool
is_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool
is_separator_char(char c)
{
	return c == '.' || c == '_' || c == '-';
}

/* Describe a byte that may not appear in a path at all. */
static void
explain_bad_char(char c, size_t at, char *why, size_t whylen)
{
	if (c >= 'A' && c <= 'Z')
		snprintf(why, whylen, "upper-case letter \"%c\" at byte %zu: paths are lower case", c, at + 1);
	else if (c > ' ' && c < 0x7f)
		snprintf(why, whylen, "character \"%c\" at byte %zu is not allowed", c, at + 1);
	else
		snprintf(why, whylen, "byte 0x%02x at byte %zu is not allowed", (unsigned char) c, at + 1);
}

/* Length of the separator starting at s[i]: "__" and a run of "-" are one separator. */
static size_t
separator_length(const char *s, size_t i, size_t end)
{
	size_t		n = 1;

	if (s[i] == '-')
		while (i + n < end && s[i + n] == '-')
			n++;
	else if (s[i] == '_' && i + 1 < end && s[i + 1] == '_')
		n = 2;
	return n;
}

/* Explain an empty component s[start..start), found at the end of the path or not. */
static void
explain_empty_component(size_t start, bool at_end, char *why, size_t whylen)
{
	if (start == 0)
		snprintf(why, whylen, "path starts with \"/\"");
	else if (at_end)
		snprintf(why, whylen, "path ends with \"/\"");
	else
		snprintf(why, whylen, "empty path component (\"//\") at byte %zu", start);
}

/* Check one non-empty component s[start..end); false with why set when invalid. */
static bool
component_validate(const char *s, size_t start, size_t end, char *why, size_t whylen)
{
	size_t		i = start;

	while (i < end)
	{
		size_t		sep_at = i;

		if (is_alnum(s[i]))
		{
			i++;
			continue;
		}
		if (!is_separator_char(s[i]))
		{
			explain_bad_char(s[i], i, why, whylen);
			return false;
		}
		i += separator_length(s, i, end);
		if (sep_at == start || i >= end || !is_alnum(s[i]))
		{
			snprintf(why, whylen,
					 "separator at byte %zu must stand between letters or digits "
					 "(allowed separators: \".\", \"_\", \"__\", \"-\")", sep_at + 1);
			return false;
		}
	}
	return true;
}

bool
path_validate(const char *path, size_t len, char *why, size_t whylen)
{
	size_t		start = 0;

	if (whylen > 0)
		why[0] = '\0';
	if (len == 0)
	{
		snprintf(why, whylen, "path is empty");
		return false;
	}
	if (len > PATH_MAX_BYTES)
	{
		snprintf(why, whylen, "path is %zu bytes long; at most %d are allowed",
				 len, PATH_MAX_BYTES);
		return false;
	}
	for (size_t i = 0; i <= len; i++)
	{
		if (i < len && path[i] != '/')
			continue;
		if (i == start)
		{
			explain_empty_component(start, i == len, why, whylen);
			return false;
		}
		if (!component_validate(path, start, i, why, whylen))
			return false;
		start = i + 1;
	}
	return true;
}

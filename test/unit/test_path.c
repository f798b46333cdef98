/*
 * test_path.c — repository path validation: the Docker
 * distribution grammar, at most 255 bytes, no case folding, and a message
 * that says what is wrong.
 *
 * Paths are handed over in heap buffers of their exact length, without a
 * terminating NUL, and messages are written to heap buffers of exactly
 * whylen bytes: AddressSanitizer reports any byte read or written past
 * either.
 */
#include "unit.h"

#include <stdlib.h>
#include <string.h>

#include "core/path.h"

#define WHY_FULL 256

/* The outcome of one call: its answer and what it wrote to why. */
typedef struct Validation
{
	bool		valid;
	bool		terminated;		/* a NUL within the whylen bytes */
	bool		untouched;		/* whylen 0: the buffer was left alone */
	char		why[WHY_FULL];
} Validation;

static void *
xmalloc(size_t n)
{
	void	   *p = malloc(n > 0 ? n : 1);

	if (p == NULL)
		abort();
	return p;
}

static Validation
validate(const char *path, size_t len, size_t whylen)
{
	Validation	v = {0};
	char	   *copy = xmalloc(len);
	char	   *why = xmalloc(whylen);

	memcpy(copy, path, len);
	/* Garbage first: the function must terminate the message itself. */
	memset(why, 'X', whylen > 0 ? whylen : 1);
	v.valid = path_validate(copy, len, why, whylen);
	if (whylen == 0)
		v.untouched = why[0] == 'X';
	else
	{
		v.terminated = memchr(why, '\0', whylen) != NULL;
		if (v.terminated)
			memcpy(v.why, why, strlen(why) + 1);
	}
	free(why);
	free(copy);
	return v;
}

/* ------------------------------------------------ independent grammar */

static bool
lower_or_digit(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool
separator_char(char c)
{
	return c == '.' || c == '_' || c == '-';
}

/*
 * The grammar restated: a component starts and ends with [a-z0-9],
 * holds only [a-z0-9._-], and every maximal run of separator characters
 * is ".", "_", "__" or dashes only. Written differently from path.c on
 * purpose, so that the two can be compared on every short string.
 */
static bool
component_ok(const char *s, size_t len)
{
	size_t		i = 0;

	if (len == 0 || !lower_or_digit(s[0]) || !lower_or_digit(s[len - 1]))
		return false;
	while (i < len)
	{
		size_t		run = 0;
		bool		dashes_only = true;

		if (lower_or_digit(s[i]))
		{
			i++;
			continue;
		}
		while (i + run < len && separator_char(s[i + run]))
		{
			dashes_only = dashes_only && s[i + run] == '-';
			run++;
		}
		if (run == 0)
			return false;		/* neither letter, digit nor separator */
		if (!(dashes_only || (run == 1) ||
			  (run == 2 && s[i] == '_' && s[i + 1] == '_')))
			return false;
		i += run;
	}
	return true;
}

static bool
path_ok(const char *s, size_t len)
{
	size_t		start = 0;

	if (len > 255)
		return false;
	for (size_t i = 0; i <= len; i++)
		if (i == len || s[i] == '/')
		{
			if (!component_ok(s + start, i - start))
				return false;
			start = i + 1;
		}
	return true;
}

/* ------------------------------------------------------------ cases */

static const char *const good_paths[] = {
	"a", "0", "a/b", "a.b", "a_b", "a__b", "a-b", "a---b", "0/9", "ab9",
	"group/sub/project/image", "gitlab-org/gitlab-ce/build.image_v2__x---y",
	"a.b_c__d-e--f/g", "9/8/7/6/5/4/3/2/1/0",
};

static const struct
{
	const char *path;
	const char *needle;			/* the message must say one of these ("a|b") */
}			bad_paths[] = {
	{"", "empty"},
	{"/a", "empty|starts with"},
	{"a/", "empty|ends with"},
	{"a//b", "empty"},
	{"/", "empty|starts with"},
	{"a/b/", "empty|ends with"},
	{"A", "upper-case"},
	{"a/B", "upper-case"},
	{"Group/image", "upper-case"},
	{"a..b", "separator"},
	{"a._b", "separator"},
	{"a_.b", "separator"},
	{"a___b", "separator"},
	{"a-_b", "separator"},
	{"-a", "separator"},
	{"a-", "separator"},
	{".a", "separator"},
	{"a.", "separator"},
	{"_a", "separator"},
	{"a/_b", "separator"},
	{"a b", "not allowed"},
	{"a:b", "not allowed"},
	{"a\tb", "not allowed"},
	{"a@b", "not allowed"},
	{"a\\b", "not allowed"},
	{"caf\xc3\xa9", "not allowed"},
	{"\xc3\xa9", "not allowed"},
};

#define NGOOD (sizeof(good_paths) / sizeof(good_paths[0]))
#define NBAD (sizeof(bad_paths) / sizeof(bad_paths[0]))

/* A valid path of len bytes: "ab-c_d.e__f/" repeated, ending in a letter. */
static char *
long_valid_path(size_t len)
{
	static const char pattern[] = "ab-c_d.e__f/";
	char	   *p = xmalloc(len + 1);

	for (size_t i = 0; i < len; i++)
		p[i] = pattern[i % (sizeof(pattern) - 1)];
	/* Never end on a separator or a slash, nor put one before the end. */
	p[len - 2] = 'y';
	p[len - 1] = 'z';
	p[len] = '\0';
	return p;
}

static void
check_good(const char *path, size_t len, const char *label)
{
	static const size_t whylens[] = {WHY_FULL, 8, 1, 0};

	CHECK(path_ok(path, len), "expectation itself: %s is valid", label);
	for (size_t i = 0; i < sizeof(whylens) / sizeof(whylens[0]); i++)
	{
		Validation	v = validate(path, len, whylens[i]);

		if (!CHECK(v.valid, "%s refused with whylen %zu: %s", label, whylens[i], v.why))
			continue;
		if (whylens[i] == 0)
			CHECK(v.untouched, "%s: whylen 0 writes nothing", label);
		else
			CHECK(v.terminated, "%s: why terminated with whylen %zu", label, whylens[i]);
	}
}

/* True when text contains one of the "|"-separated alternatives. */
static bool
mentions(const char *text, const char *alternatives)
{
	char		word[64];
	const char *p = alternatives;

	while (*p != '\0')
	{
		size_t		n = strcspn(p, "|");

		if (n > 0 && n < sizeof(word))
		{
			memcpy(word, p, n);
			word[n] = '\0';
			if (strstr(text, word) != NULL)
				return true;
		}
		p += n;
		if (*p == '|')
			p++;
	}
	return false;
}

/* A refused path: a full message with the needle, and safe truncation. */
static void
check_bad(const char *path, size_t len, const char *needle, const char *label)
{
	Validation	full = validate(path, len, WHY_FULL);
	Validation	one = validate(path, len, 1);
	Validation	eight = validate(path, len, 8);
	Validation	none = validate(path, len, 0);

	CHECK(!path_ok(path, len), "expectation itself: %s is invalid", label);
	CHECK(!full.valid && !one.valid && !eight.valid && !none.valid, "%s accepted", label);
	if (CHECK(full.terminated, "%s: why terminated", label))
	{
		CHECK(full.why[0] != '\0', "%s: why is empty", label);
		CHECK(mentions(full.why, needle), "%s: \"%s\" does not say %s", label, full.why,
			  needle);
	}
	CHECK(one.terminated && one.why[0] == '\0', "%s: whylen 1 leaves only the NUL", label);
	if (CHECK(eight.terminated, "%s: why terminated with whylen 8", label))
		CHECK(strlen(eight.why) == 7 && strncmp(eight.why, full.why, 7) == 0,
			  "%s: whylen 8 gives \"%s\", the start of \"%s\"", label, eight.why, full.why);
	CHECK(none.untouched, "%s: whylen 0 writes nothing", label);
}

static void
check_listed_paths(void)
{
	for (size_t i = 0; i < NGOOD; i++)
		check_good(good_paths[i], strlen(good_paths[i]), good_paths[i]);
	for (size_t i = 0; i < NBAD; i++)
		check_bad(bad_paths[i].path, strlen(bad_paths[i].path), bad_paths[i].needle,
				  bad_paths[i].path);
	/* len, not a NUL, ends the path: a NUL inside is a byte like any other. */
	check_bad("a\0b", 3, "not allowed", "a\\0b");
	check_good("ab\0", 2, "ab followed by a NUL outside len");
}

static void
check_lengths(void)
{
	char	   *p255 = long_valid_path(255);
	char	   *p256 = long_valid_path(256);
	char	   *p1000 = long_valid_path(1000);

	check_good(p255, 255, "255-byte path");
	check_bad(p256, 256, "255", "256-byte path");
	check_bad(p1000, 1000, "255", "1000-byte path");
	/* The limit counts bytes, not characters. */
	memset(p256, 'a', 256);
	check_bad(p256, 256, "255", "256 times a");
	free(p255);
	free(p256);
	free(p1000);
}

/*
 * Every string of up to five bytes over an alphabet that has a letter, a
 * digit, a capital, each separator, the slash, a space and a non-ASCII
 * byte: the code and the restated grammar must agree on each, and each
 * refusal must come with a message. One check per length, naming the
 * first disagreement, keeps the count readable.
 */
static void
check_exhaustive(void)
{
	static const char alphabet[] = {'a', '0', 'Z', '.', '_', '-', '/', ' ', '\xc3'};
	const size_t n = sizeof(alphabet);

	for (size_t len = 0; len <= 5; len++)
	{
		size_t		total = 1;
		size_t		mismatches = 0;
		char		first[6] = "";
		char		s[6];

		for (size_t i = 0; i < len; i++)
			total *= n;
		for (size_t k = 0; k < total; k++)
		{
			Validation	v;
			size_t		rest = k;

			for (size_t i = 0; i < len; i++)
			{
				s[i] = alphabet[rest % n];
				rest /= n;
			}
			v = validate(s, len, WHY_FULL);
			if (v.valid != path_ok(s, len) || !v.terminated || (!v.valid && v.why[0] == '\0'))
			{
				if (mismatches++ == 0)
				{
					memcpy(first, s, len);
					first[len] = '\0';
				}
			}
		}
		CHECK_INT_EQ(mismatches, 0, "strings of %zu bytes; first disagreement on \"%s\"",
					 len, first);
	}
}

void
test_path(void)
{
	check_listed_paths();
	check_lengths();
	check_exhaustive();
}

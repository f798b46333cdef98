/*
 * test_registry_json.c — the strict JSON reader of registry answers: what
 * it extracts, and every kind of hostile body it must call unusable
 * (deep nesting, NUL bytes, invalid UTF-8, truncation, bad grammar).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/registry_json.h"
#include "unit.h"

/* The status read from a body given with its length (it may hold NUL bytes). */
static const char *
status_of_bytes(const char *body, size_t len)
{
	static char out[REGISTRY_STATUS_MAX + 1];

	return json_status_member(body, len, out) ? out : NULL;
}

static const char *
status_of(const char *body)
{
	return status_of_bytes(body, strlen(body));
}

static void
check_status(const char *body, const char *want)
{
	CHECK_STR_EQ(status_of(body), want, "status of %s", body);
}

static void
check_tags(const char *body, long long want)
{
	CHECK_INT_EQ(json_tags_count(body, strlen(body)), want, "tags of %s", body);
}

static void
test_status_extracted(void)
{
	check_status("{\"name\":\"a\",\"path\":\"g/a\",\"status\":\"import_complete\",\"detail\":\"\"}",
				 "import_complete");
	check_status(" \t\r\n{ \"status\" : \"native\" } \n", "native");
	check_status("{\"detail\":{\"nested\":[1,2,{\"status\":\"x\"}]},\"status\":\"native\"}", "native");
	/* Member names and values are compared and returned unescaped. */
	check_status("{\"st\\u0061tus\":\"native\"}", "native");
	check_status("{\"status\":\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"}", "a\"b\\c/d\b\f\n\r\t");
	check_status("{\"status\":\"caf\\u00e9 \\u20ac\"}", "caf\xc3\xa9 \xe2\x82\xac");
	check_status("{\"status\":\"\\ud83d\\ude00\"}", "\xf0\x9f\x98\x80");
	check_status("{\"status\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf\"}",
				 "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf");
	check_status("{\"status\":\"\"}", "");
	/* Any other value around the status is fine, whatever its size. */
	check_status("{\"n\":-0.5e+300,\"t\":true,\"f\":false,\"z\":null,\"a\":[],\"o\":{},\"status\":\"native\"}",
				 "native");
	check_status("{\"big\":1e999999999,\"status\":\"native\",\"small\":-123456789012345678901234567890.5E-999}",
				 "native");
}

static void
test_status_unusable(void)
{
	const char *bodies[] = {
		"", " ", "null", "\"import_complete\"", "[\"import_complete\"]", "{}",
		"{\"name\":\"a\"}",
		/* not a string */
		"{\"status\":null}", "{\"status\":1}", "{\"status\":true}", "{\"status\":[\"native\"]}",
		"{\"status\":{\"status\":\"native\"}}",
		/* not at the top level */
		"{\"x\":{\"status\":\"native\"}}", "{\"x\":[{\"status\":\"native\"}]}",
		/* a name that only starts like it */
		"{\"statuses\":\"native\"}", "{\"Status\":\"native\"}",
		/* grammar */
		"{\"status\":\"native\"", "{\"status\":\"native\",}", "{\"status\" \"native\"}",
		"{\"status\":\"native\" \"x\":1}", "{,\"status\":\"native\"}", "{\"status\":}",
		"{\"status\":\"native\"]", "{\"a\":[1,],\"status\":\"native\"}", "{\"a\":[1 2],\"status\":\"native\"}",
		"{'status':'native'}", "{status:\"native\"}", "{\"status\":\"native\"}}",
		"{\"status\":\"native\"} x", "{\"status\":\"native\"}{}", "{\"status\":\"native\"}\f",
		"{\"a\":[}", "{]", "\xef\xbb\xbf{\"status\":\"native\"}",
		/* numbers and literals */
		"{\"a\":01,\"status\":\"native\"}", "{\"a\":1.,\"status\":\"native\"}",
		"{\"a\":.5,\"status\":\"native\"}", "{\"a\":+1,\"status\":\"native\"}",
		"{\"a\":1e,\"status\":\"native\"}", "{\"a\":-,\"status\":\"native\"}",
		"{\"a\":NaN,\"status\":\"native\"}", "{\"a\":Infinity,\"status\":\"native\"}",
		"{\"a\":0x10,\"status\":\"native\"}", "{\"a\":tru,\"status\":\"native\"}",
		"{\"a\":nul}", "{\"a\":True,\"status\":\"native\"}",
		/* escapes */
		"{\"status\":\"\\x41\"}", "{\"status\":\"\\u12\"}", "{\"status\":\"\\u12G4\"}",
		"{\"status\":\"native\\\"}", "{\"status\":\"\\",
		/* \u0000 anywhere, and unpaired surrogates */
		"{\"status\":\"native\\u0000\"}", "{\"status\":\"native\",\"detail\":\"\\u0000\"}",
		"{\"status\":\"\\ud83d\"}", "{\"status\":\"\\ude00\"}", "{\"status\":\"\\ud83d\\u0041\"}",
		"{\"status\":\"\\ud83d\\ud83d\"}", "{\"status\":\"\\ud83dx\"}",
		/* raw control characters in strings */
		"{\"status\":\"nat\nive\"}", "{\"status\":\"nat\tive\"}", "{\"status\":\"\x1f\"}",
	};

	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++)
		CHECK_STR_EQ(status_of(bodies[i]), NULL, "unusable: %s", bodies[i]);
	CHECK_STR_EQ(status_of_bytes(NULL, 0), NULL, "no body");
}

/* NUL bytes are never part of a usable answer, inside or after the document. */
static void
test_nul_bytes(void)
{
	static const char after[] = "{\"status\":\"import_complete\"}\0garbage";
	static const char inside[] = "{\"status\":\"import\0complete\"}";
	static const char between[] = "{\"status\":\"import_complete\",\0\"a\":1}";
	static const char trailing[] = "{\"status\":\"import_complete\"}\0";

	CHECK_STR_EQ(status_of_bytes(after, sizeof(after) - 1), NULL, "NUL then garbage after the object");
	CHECK_STR_EQ(status_of_bytes(inside, sizeof(inside) - 1), NULL, "NUL inside the status");
	CHECK_STR_EQ(status_of_bytes(between, sizeof(between) - 1), NULL, "NUL between members");
	CHECK_STR_EQ(status_of_bytes(trailing, sizeof(trailing) - 1), NULL, "one trailing NUL");
	CHECK_INT_EQ(json_tags_count(after, sizeof(after) - 1), -1, "tags: NUL after the object");
}

static void
test_utf8(void)
{
	const char *invalid[] = {
		"\xc0\xaf",				/* overlong "/" */
		"\xc1\xbf",				/* overlong */
		"\xe0\x80\xaf",			/* overlong, 3 bytes */
		"\xe0\x9f\xbf",			/* overlong, 3 bytes */
		"\xf0\x80\x80\xaf",		/* overlong, 4 bytes */
		"\xf0\x8f\xbf\xbf",		/* overlong, 4 bytes */
		"\xed\xa0\x80",			/* an encoded surrogate, U+D800 */
		"\xed\xbf\xbf",			/* U+DFFF */
		"\xf4\x90\x80\x80",		/* U+110000 */
		"\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80", "\xfe", "\xff",
		"\x80",					/* a lone continuation byte */
		"\xbf",
		"\xc3",					/* truncated sequences */
		"\xe2\x82", "\xf0\x9f\x98",
		"\xc3\x28",				/* a bad continuation byte */
		"\xe2\x28\xa1", "\xf0\x9f\x28\x80",
	};
	const char *valid[] = {
		"\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbf",
		"\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf",
	};
	char		body[64];

	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
	{
		snprintf(body, sizeof(body), "{\"status\":\"a%sb\"}", invalid[i]);
		CHECK_STR_EQ(status_of(body), NULL, "invalid UTF-8 #%zu in the status", i);
		snprintf(body, sizeof(body), "{\"status\":\"native\",\"d\":\"%s\"}", invalid[i]);
		CHECK_STR_EQ(status_of(body), NULL, "invalid UTF-8 #%zu in another member", i);
		snprintf(body, sizeof(body), "{\"status\":\"native\",\"%s\":1}", invalid[i]);
		CHECK_STR_EQ(status_of(body), NULL, "invalid UTF-8 #%zu in a member name", i);
		snprintf(body, sizeof(body), "{\"status\":\"native\"}%s", invalid[i]);
		CHECK_STR_EQ(status_of(body), NULL, "invalid UTF-8 #%zu after the object", i);
	}
	for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++)
	{
		char		want[16];

		snprintf(body, sizeof(body), "{\"status\":\"a%sb\"}", valid[i]);
		snprintf(want, sizeof(want), "a%sb", valid[i]);
		CHECK_STR_EQ(status_of(body), want, "valid UTF-8 #%zu", i);
	}
}

/* A status longer than any the registry defines is unusable; so is a long name. */
static void
test_status_length(void)
{
	char		body[256];
	char		value[REGISTRY_STATUS_MAX + 2];

	memset(value, 'a', REGISTRY_STATUS_MAX);
	value[REGISTRY_STATUS_MAX] = '\0';
	snprintf(body, sizeof(body), "{\"status\":\"%s\"}", value);
	CHECK_STR_EQ(status_of(body), value, "a status of %d bytes is kept", REGISTRY_STATUS_MAX);
	value[REGISTRY_STATUS_MAX] = 'a';
	value[REGISTRY_STATUS_MAX + 1] = '\0';
	snprintf(body, sizeof(body), "{\"status\":\"%s\"}", value);
	CHECK_STR_EQ(status_of(body), NULL, "a status of %d bytes is not", REGISTRY_STATUS_MAX + 1);
	/* 64 bytes decoded from 6-byte escapes: the limit is on the decoded value. */
	body[0] = '\0';
	strcat(body, "{\"status\":\"");
	for (int i = 0; i < 32; i++)
		strcat(body, "\\u00e9");
	strcat(body, "\"}");
	CHECK_INT_EQ(strlen(status_of(body) ? status_of(body) : ""), 64, "decoded length counts");
	snprintf(body, sizeof(body), "{\"status%s\":\"native\"}", value);
	CHECK_STR_EQ(status_of(body), NULL, "a long member name starting with status");
}

/* The last of repeated members counts, as in jsonb. */
static void
test_duplicate_members(void)
{
	check_status("{\"status\":\"import_failed\",\"status\":\"import_complete\"}", "import_complete");
	check_status("{\"status\":1,\"status\":\"native\"}", "native");
	check_status("{\"status\":\"native\",\"status\":null}", NULL);
	check_status("{\"status\":\"native\",\"st\\u0061tus\":[]}", NULL);
	check_tags("{\"tags\":[\"a\",\"b\"],\"tags\":[\"c\"]}", 1);
	check_tags("{\"tags\":[\"a\"],\"tags\":null}", 0);
	check_tags("{\"tags\":null,\"tags\":\"a\"}", -1);
}

/*
 * {"a":<depth levels of "[" or {"a": around 1>,"status":"ok"}, malloc'd:
 * the top-level object makes depth + 1 levels in all.
 */
static char *
nested_body(long depth, bool objects, size_t *len)
{
	const char *open = objects ? "{\"a\":" : "[";
	const char *tail = ",\"status\":\"ok\"}";
	size_t		openlen = strlen(open);
	char	   *body = malloc(8 + depth * (openlen + 1) + strlen(tail) + 1);
	size_t		o = 0;

	o += (size_t) sprintf(body, "{\"a\":");
	for (long i = 0; i < depth; i++, o += openlen)
		memcpy(body + o, open, openlen);
	body[o++] = '1';
	for (long i = 0; i < depth; i++)
		body[o++] = objects ? '}' : ']';
	o += (size_t) sprintf(body + o, "%s", tail);
	*len = o;
	return body;
}

static void
test_depth(void)
{
	size_t		len;
	char	   *body;

	for (int objects = 0; objects <= 1; objects++)
	{
		body = nested_body(JSON_MAX_DEPTH - 1, objects, &len);
		CHECK_STR_EQ(status_of_bytes(body, len), "ok", "%d levels are read (objects %d)",
					 JSON_MAX_DEPTH, objects);
		free(body);

		body = nested_body(JSON_MAX_DEPTH, objects, &len);
		CHECK_STR_EQ(status_of_bytes(body, len), NULL, "%d levels are refused (objects %d)",
					 JSON_MAX_DEPTH + 1, objects);
		free(body);

		/* A million levels: refused, without using the stack. */
		body = nested_body(1000000, objects, &len);
		CHECK_STR_EQ(status_of_bytes(body, len), NULL, "a million levels (objects %d)", objects);
		CHECK_INT_EQ(json_tags_count(body, len), -1, "a million levels, tags (objects %d)", objects);
		free(body);
	}
	/* Unbalanced: a million opens and nothing else. */
	body = malloc(1000000);
	memset(body, '[', 1000000);
	body[0] = '{';
	CHECK_STR_EQ(status_of_bytes(body, 1000000), NULL, "a million opening brackets");
	free(body);
}

/* Every proper prefix of a valid answer is unusable: a cut answer is never read. */
static void
test_truncated(void)
{
	const char *full = "{\"name\":\"g/a\",\"status\":\"import_complete\",\"detail\":"
		"{\"n\":[1,-2.5e3,true,false,null,\"\\u00e9\\ud83d\\ude00\xc3\xa9\"]}}";
	size_t		len = strlen(full);
	int			usable = 0;

	for (size_t cut = 0; cut < len; cut++)
	{
		char	   *prefix = malloc(cut + 1);	/* exact size: ASan sees any over-read */

		memcpy(prefix, full, cut);
		if (status_of_bytes(prefix, cut) != NULL)
			usable++;
		free(prefix);
	}
	CHECK_INT_EQ(usable, 0, "prefixes of %s", full);
	check_status(full, "import_complete");
}

/* A huge body of many members: read in one pass, whatever its size. */
static void
test_large_bodies(void)
{
	size_t		count = 1000000;
	size_t		cap = 16 + count * 4 + 32;
	char	   *body = malloc(cap);
	size_t		o = 0;
	char	   *digits;

	o += (size_t) sprintf(body + o, "{\"tags\":[");
	for (size_t i = 0; i < count; i++)
		o += (size_t) sprintf(body + o, "%s\"a\"", i ? "," : "");
	o += (size_t) sprintf(body + o, "]}");
	CHECK_INT_EQ(json_tags_count(body, o), (long long) count, "a million tags");
	free(body);

	/* A number of a million digits is valid JSON; its value is never needed. */
	digits = malloc(1000000 + 64);
	o = (size_t) sprintf(digits, "{\"n\":-");
	memset(digits + o, '9', 1000000);
	o += 1000000;
	o += (size_t) sprintf(digits + o, ".5e-99999999999999999999,\"status\":\"native\"}");
	CHECK_STR_EQ(status_of_bytes(digits, o), "native", "a number of a million digits");
	free(digits);
}

static void
test_tags(void)
{
	check_tags("{\"name\":\"g/a\",\"tags\":[\"latest\",\"v1\",\"v2\"]}", 3);
	check_tags("{\"name\":\"g/a\",\"tags\":[]}", 0);
	check_tags("{\"name\":\"g/a\",\"tags\":null}", 0);
	check_tags("{\"tags\" : [ \"a\" ] }", 1);
	/* Elements of the top-level array only, whatever they hold. */
	check_tags("{\"tags\":[[1,2],[3],{\"a\":[4,5]},[],{}]}", 5);
	check_tags("{\"x\":{\"tags\":[1,2]},\"tags\":[1]}", 1);
	check_tags("{\"name\":\"g/a\"}", -1);
	check_tags("{\"tags\":\"a\"}", -1);
	check_tags("{\"tags\":{}}", -1);
	check_tags("{\"tags\":1}", -1);
	check_tags("{\"tags\":[\"a\",]}", -1);
	check_tags("{\"tags\":[\"a\"]", -1);
	check_tags("[\"tags\"]", -1);
	check_tags("{\"tags\":[\"a\xff\"]}", -1);
	check_tags("", -1);
}

static void
check_code(const char *body, const char *want)
{
	char		out[REGISTRY_STATUS_MAX + 1];

	CHECK_STR_EQ(json_first_error_code(body, strlen(body), out) ? out : NULL, want,
				 "error code of %s", body);
}

/* The code of the first error of the registry's error envelope, and nothing else. */
static void
test_error_code(void)
{
	char		deep[4096];
	size_t		o = 0;

	check_code("{\"errors\":[{\"code\":\"IMPORT_RATE_LIMIT\",\"message\":\"m\",\"detail\":null}]}",
			   "IMPORT_RATE_LIMIT");
	check_code("{\"errors\" : [ {\"message\":\"m\", \"code\" : \"IMPORT_REPOSITORY_NOT_READY\"} ] }",
			   "IMPORT_REPOSITORY_NOT_READY");
	/* The first element only, whatever the others say. */
	check_code("{\"errors\":[{\"code\":\"A\"},{\"code\":\"B\"}]}", "A");
	check_code("{\"errors\":[{\"message\":\"no code\"},{\"code\":\"B\"}]}", NULL);
	check_code("{\"errors\":[\"A\",{\"code\":\"B\"}]}", NULL);
	check_code("{\"errors\":[[\"code\",\"A\"]]}", NULL);
	check_code("{\"errors\":[{\"code\":\"A\"},[\"B\"]]}", "A");
	/* Members of the element only, not deeper ones nor elsewhere. */
	check_code("{\"errors\":[{\"detail\":{\"code\":\"B\"}}]}", NULL);
	check_code("{\"errors\":[{\"detail\":{\"code\":\"B\"},\"code\":\"A\"}]}", "A");
	check_code("{\"code\":\"A\",\"errors\":[]}", NULL);
	check_code("{\"x\":{\"errors\":[{\"code\":\"A\"}]}}", NULL);
	/* Repeated names: the last one counts. */
	check_code("{\"errors\":[{\"code\":\"A\",\"code\":\"B\"}]}", "B");
	check_code("{\"errors\":[{\"code\":\"A\"}],\"errors\":[{\"message\":\"m\"}]}", NULL);
	check_code("{\"errors\":[{\"code\":\"A\"}],\"errors\":{\"x\":[\"B\"]}}", NULL);
	/* A code that is not a short string is no code. */
	check_code("{\"errors\":[{\"code\":1}]}", NULL);
	check_code("{\"errors\":[{\"code\":null}]}", NULL);
	check_code("{\"errors\":[{\"code\":[\"A\"]}]}", NULL);
	check_code("{\"errors\":[{\"code\":{\"x\":\"A\"}}]}", NULL);
	check_code("{\"errors\":[{\"code\":\""
			   "0123456789012345678901234567890123456789012345678901234567890123456789\"}]}", NULL);
	/* No envelope, or not valid JSON: no code. */
	check_code("{\"errors\":[]}", NULL);
	check_code("{\"errors\":{\"code\":\"A\"}}", NULL);
	check_code("{\"errors\":[{\"code\":\"A\"}]", NULL);
	check_code("{\"errors\":[{\"code\":\"A\"}]} x", NULL);
	check_code("{\"errors\":[{\"code\":\"A\xff\"}]}", NULL);
	check_code("[{\"code\":\"A\"}]", NULL);
	check_code("too many imports", NULL);
	check_code("", NULL);
	/* Nesting past the limit makes the whole body unusable, even after the code. */
	o += (size_t) sprintf(deep + o, "{\"errors\":[{\"code\":\"A\"}],\"x\":");
	for (int i = 0; i < JSON_MAX_DEPTH; i++)
		deep[o++] = '[';
	for (int i = 0; i < JSON_MAX_DEPTH; i++)
		deep[o++] = ']';
	deep[o++] = '}';
	deep[o] = '\0';
	check_code(deep, NULL);
}

void
test_registry_json(void)
{
	test_status_extracted();
	test_status_unusable();
	test_nul_bytes();
	test_utf8();
	test_error_code();
	test_status_length();
	test_duplicate_members();
	test_depth();
	test_truncated();
	test_large_bodies();
	test_tags();
}

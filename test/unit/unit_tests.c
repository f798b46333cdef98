/*
 * unit_tests.c — runner of the standalone unit tests and home of the
 * assertion framework declared in unit.h.
 *
 * Everything goes to stdout, in order, so that the summary line is always
 * the last line: scripts/test reads it to count passed and failed checks.
 */
#include "unit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long checks;
static long failures;

long
unit_checks(void)
{
	return checks;
}

long
unit_failures(void)
{
	return failures;
}

/* Count one check; on failure print where, what, why, and the caller's context. */
static bool
record(bool ok, const char *file, int line, const char *expr, const char *detail,
	   const char *fmt, va_list ap)
{
	checks++;
	if (ok)
		return true;
	failures++;
	printf("%s:%d: FAILED %s", file, line, expr);
	if (detail[0] != '\0')
		printf(": %s", detail);
	printf(" [");
	vprintf(fmt, ap);
	printf("]\n");
	fflush(stdout);
	return false;
}

bool
unit_check(bool ok, const char *file, int line, const char *expr, const char *fmt, ...)
{
	va_list		ap;
	bool		result;

	va_start(ap, fmt);
	result = record(ok, file, line, expr, "", fmt, ap);
	va_end(ap);
	return result;
}

/* Quote a string for a message, NULL shown as NULL. */
static void
quote(char *buf, size_t buflen, const char *s)
{
	if (s == NULL)
		snprintf(buf, buflen, "NULL");
	else
		snprintf(buf, buflen, "\"%s\"", s);
}

bool
unit_check_str(const char *got, const char *want, const char *file, int line,
			   const char *expr, const char *fmt, ...)
{
	va_list		ap;
	bool		ok;
	bool		result;
	char		qgot[300];
	char		qwant[300];
	char		detail[650];

	if (got == NULL || want == NULL)
		ok = got == want;
	else
		ok = strcmp(got, want) == 0;
	quote(qgot, sizeof(qgot), got);
	quote(qwant, sizeof(qwant), want);
	snprintf(detail, sizeof(detail), "got %s, expected %s", qgot, qwant);

	va_start(ap, fmt);
	result = record(ok, file, line, expr, detail, fmt, ap);
	va_end(ap);
	return result;
}

bool
unit_check_int(long long got, long long want, const char *file, int line,
			   const char *expr, const char *fmt, ...)
{
	va_list		ap;
	bool		result;
	char		detail[100];

	snprintf(detail, sizeof(detail), "got %lld, expected %lld", got, want);
	va_start(ap, fmt);
	result = record(got == want, file, line, expr, detail, fmt, ap);
	va_end(ap);
	return result;
}

bool
unit_check_contains(const char *haystack, const char *needle, const char *file,
					int line, const char *expr, const char *fmt, ...)
{
	va_list		ap;
	bool		result;
	char		qhay[300];
	char		detail[400];

	quote(qhay, sizeof(qhay), haystack);
	snprintf(detail, sizeof(detail), "%s does not contain \"%s\"", qhay, needle);
	va_start(ap, fmt);
	result = record(haystack != NULL && strstr(haystack, needle) != NULL,
					file, line, expr, detail, fmt, ap);
	va_end(ap);
	return result;
}

/* Run one suite and say how many checks it made and how many failed. */
static void
run_suite(const char *name, void (*suite) (void))
{
	long		checks_before = checks;
	long		failures_before = failures;

	suite();
	printf("%-12s %ld checks, %ld failed\n", name,
		   checks - checks_before, failures - failures_before);
	fflush(stdout);
}

int
main(void)
{
	run_suite("decision", test_decision);
	run_suite("transitions", test_transitions);
	run_suite("path", test_path);
	run_suite("registry_api", test_registry_api);
	run_suite("jwt", test_jwt);
	run_suite("registry_json", test_registry_json);
	run_suite("url_origin", test_url_origin);
	run_suite("pem_files", test_pem_files);
	run_suite("sql_facts", test_sql_facts);

	printf("unit: %ld passed, %ld failed\n", checks - failures, failures);
	return failures > 0 ? EXIT_FAILURE : EXIT_SUCCESS;
}

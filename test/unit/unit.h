/*
 * unit.h — a tiny assertion framework for the standalone unit tests.
 *
 * Every CHECK counts one check; a failed one prints file:line, what was
 * checked and a message, and counts one failure. Checks never stop the run,
 * so one broken rule shows every case it breaks, not only the first.
 * Each macro evaluates to true when the check passed, so a test can skip
 * work that only makes sense after a passing check.
 *
 * The message is a printf format and its arguments; it is required (C11
 * has no portable way to leave a variadic macro's arguments empty).
 */
#ifndef RM_UNIT_H
#define RM_UNIT_H

#include <stdbool.h>
#include <stddef.h>

#if defined(__GNUC__)
#define UNIT_PRINTF(fmt, first) __attribute__((format(printf, fmt, first)))
#else
#define UNIT_PRINTF(fmt, first)
#endif

/* A condition that must hold. */
#define CHECK(cond, ...) \
	unit_check((cond) ? true : false, __FILE__, __LINE__, #cond, __VA_ARGS__)

/* Two C strings that must be equal; either may be NULL. */
#define CHECK_STR_EQ(got, want, ...) \
	unit_check_str((got), (want), __FILE__, __LINE__, #got, __VA_ARGS__)

/* Two integers that must be equal. */
#define CHECK_INT_EQ(got, want, ...) \
	unit_check_int((long long) (got), (long long) (want), __FILE__, __LINE__, \
				   #got, __VA_ARGS__)

/* A C string that must contain needle. */
#define CHECK_CONTAINS(haystack, needle, ...) \
	unit_check_contains((haystack), (needle), __FILE__, __LINE__, #haystack, \
						__VA_ARGS__)

extern bool unit_check(bool ok, const char *file, int line, const char *expr,
					   const char *fmt, ...) UNIT_PRINTF(5, 6);
extern bool unit_check_str(const char *got, const char *want, const char *file,
						   int line, const char *expr, const char *fmt, ...)
			UNIT_PRINTF(6, 7);
extern bool unit_check_int(long long got, long long want, const char *file,
						   int line, const char *expr, const char *fmt, ...)
			UNIT_PRINTF(6, 7);
extern bool unit_check_contains(const char *haystack, const char *needle,
								const char *file, int line, const char *expr,
								const char *fmt, ...) UNIT_PRINTF(6, 7);

/* Totals so far, for the per-suite lines and the final summary. */
extern long unit_checks(void);
extern long unit_failures(void);

/* The suites, one per file. */
extern void test_decision(void);
extern void test_transitions(void);
extern void test_path(void);
extern void test_registry_api(void);
extern void test_jwt(void);
extern void test_registry_json(void);
extern void test_url_origin(void);
extern void test_pem_files(void);
extern void test_sql_facts(void);

#endif

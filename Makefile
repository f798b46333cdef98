# registry_migration — PGXS build.

EXTENSION = registry_migration
EXTVERSION = 1.1

MODULE_big = registry_migration
OBJS = \
	src/registry_migration.o \
	src/guc.o \
	src/states.o \
	src/decision.o \
	src/transitions.o \
	src/path.o \
	src/spi_util.o \
	src/sql_enums.o \
	src/sql_decision.o \
	src/event_log.o \
	src/state_machine.o \
	src/admin.o \
	src/sql_path.o \
	src/path_trigger.o \
	src/registry_api.o \
	src/jwt.o \
	src/http.o \
	src/registry_json.o \
	src/url_origin.o \
	src/token.o \
	src/registry_client.o \
	src/sql_lookups.o \
	src/settings.o \
	src/summary.o \
	src/cycle.o \
	src/backoff.o \
	src/starts.o \
	src/guard.o \
	src/enqueuer.o \
	src/notifications.o \
	src/worker_shared.o \
	src/worker.o

DATA = $(wildcard registry_migration--*.sql)

REGRESS = states schema paths settings transitions admin decision events privileges security gucs
REGRESS_OPTS = --load-extension=registry_migration

PG_CPPFLAGS = -I$(srcdir)/src -DEXTVERSION=\"$(EXTVERSION)\" \
	$(shell pkg-config --cflags libcurl openssl)
SHLIB_LINK = $(shell pkg-config --libs libcurl openssl)

# The same source builds the same library from any directory, so
# scripts/setup can tell that an installed copy is current.
PG_CPPFLAGS += -ffile-prefix-map=$(CURDIR)=.

EXTRA_CLEAN = test/unit/unit_tests

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The User-Agent carries the version: a new EXTVERSION rebuilds it.
src/http.o: Makefile

# Pure C logic (no server headers), tested outside the server under
# AddressSanitizer and UndefinedBehaviorSanitizer.
UNIT_SOURCES = src/states.c src/decision.c src/transitions.c src/path.c \
	src/registry_api.c src/jwt.c src/registry_json.c src/url_origin.c
UNIT_TESTS = test/unit/unit_tests.c test/unit/test_decision.c \
	test/unit/test_transitions.c test/unit/test_path.c \
	test/unit/test_registry_api.c test/unit/test_jwt.c \
	test/unit/test_registry_json.c test/unit/test_url_origin.c

test/unit/unit_tests: $(UNIT_SOURCES) $(UNIT_TESTS) test/unit/unit.h
	$(CC) -std=c11 -g -O1 -Wall -Wextra -Werror -fno-omit-frame-pointer \
		-fsanitize=address,undefined -fno-sanitize-recover=all \
		-D_GNU_SOURCE -Isrc -o $@ $(UNIT_SOURCES) $(UNIT_TESTS) \
		$(shell pkg-config --libs libcurl libcrypto)

unitcheck: test/unit/unit_tests
	test/unit/unit_tests

.PHONY: unitcheck

# registry_migration — PGXS build.

# The version is written here and nowhere else: the control file's
# default_version and the User-Agent come from it, and the install script
# registry_migration--$(EXTVERSION).sql must exist (CHANGELOG.md says what
# each version changed). Upgrade scripts registry_migration--A--B.sql and the
# install scripts of earlier versions are installed by the wildcard in DATA.
EXTENSION = registry_migration
EXTVERSION = 1.1

MODULE_big = registry_migration

# The layers, from the bottom up: core (pure C, no server headers), store,
# registry, control, sql and worker; src/ itself holds the module's entry
# point and its configuration parameters.
CORE_SOURCES = $(wildcard src/core/*.c)
OBJS = \
	src/registry_migration.o \
	src/guc.o \
	$(patsubst %.c,%.o,$(CORE_SOURCES)) \
	$(patsubst %.c,%.o,$(wildcard src/store/*.c src/registry/*.c src/control/*.c src/sql/*.c src/worker/*.c))

DATA = $(notdir $(wildcard $(srcdir)/registry_migration--*.sql))

# The postgres_exporter queries (docs/monitoring.md) are installed beside
# the scripts, in $(pg_config --sharedir)/extension/: the one directory of
# the extension's files that make install and the Debian package share.
DATA += monitoring/registry_migration_queries.yaml

# setup creates the helpers the other files share: it runs first.
REGRESS = setup states schema paths settings transitions admin decision events counts privileges security gucs
REGRESS_OPTS = --load-extension=registry_migration

PG_CPPFLAGS = -I$(srcdir)/src -DEXTVERSION=\"$(EXTVERSION)\" \
	$(shell pkg-config --cflags libcurl openssl)
SHLIB_LINK = $(shell pkg-config --libs libcurl openssl)

# The same source builds the same library from any directory, so
# scripts/setup can tell that an installed copy is current.
PG_CPPFLAGS += -ffile-prefix-map=$(CURDIR)=.

EXTRA_CLEAN = test/unit/unit_tests $(srcdir)/$(EXTENSION).control

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The User-Agent carries the version: a new EXTVERSION rebuilds it.
src/registry/http.o: Makefile

# PGXS tracks no header dependencies: a changed header (a struct that grew)
# rebuilds every object, so no object is left with an old layout.
$(OBJS): $(wildcard src/*.h src/*/*.h)

# The control file, made from its template with default_version =
# EXTVERSION (rewritten only when that changes). It is made at the top of the
# source tree, where PGXS installs it from (also in a VPATH build), and it
# needs the version's install script.
$(srcdir)/$(EXTENSION).control: $(srcdir)/$(EXTENSION).control.in \
		$(srcdir)/$(EXTENSION)--$(EXTVERSION).sql control-version
	@sed -e '/^# template:/d' -e 's/@EXTVERSION@/$(EXTVERSION)/g' $< > $@.tmp
	@if cmp -s $@.tmp $@; then rm $@.tmp; else mv $@.tmp $@; echo "$(EXTENSION).control: default_version $(EXTVERSION)"; fi

# Every regression file in sql/ is in REGRESS, and every one has its
# expected output.
regresscheck-list:
	@missing="$(filter-out $(REGRESS),$(basename $(notdir $(wildcard $(srcdir)/sql/*.sql))))"; \
	  test -z "$$missing" || { echo "sql/ files not in REGRESS: $$missing" >&2; exit 1; }
	@for t in $(REGRESS); do test -f $(srcdir)/expected/$$t.out || { echo "no expected/$$t.out" >&2; exit 1; }; done

installcheck: regresscheck-list

# Pure C logic (no server headers), tested outside the server under
# AddressSanitizer and UndefinedBehaviorSanitizer.
UNIT_SOURCES = $(CORE_SOURCES)
UNIT_TESTS = $(wildcard test/unit/*.c)

test/unit/unit_tests: $(UNIT_SOURCES) $(wildcard src/core/*.h) $(UNIT_TESTS) test/unit/unit.h
	$(CC) -std=c11 -g -O1 -Wall -Wextra -Werror -fno-omit-frame-pointer \
		-fsanitize=address,undefined -fno-sanitize-recover=all \
		-D_GNU_SOURCE -Isrc -o $@ $(UNIT_SOURCES) $(UNIT_TESTS) \
		$(shell pkg-config --libs libcurl libcrypto)

unitcheck: test/unit/unit_tests
	test/unit/unit_tests

# The PGXN release archive: the tree committed at HEAD (so no build product,
# log or uncommitted change), under the directory
# registry_migration-<version>/. PGXN versions have three parts; META.json
# carries the same one (a test compares them).
DISTVERSION = $(if $(word 3,$(subst ., ,$(EXTVERSION))),$(EXTVERSION),$(EXTVERSION).0)
DISTFILE = $(EXTENSION)-$(DISTVERSION).zip

dist:
	@test -z "$$(git -C $(srcdir) status --porcelain)" || echo "dist: uncommitted changes are not in the archive (it is made from HEAD)" >&2
	git -C $(srcdir) archive --format=zip --prefix=$(EXTENSION)-$(DISTVERSION)/ -o $(abspath $(DISTFILE)) HEAD

.PHONY: unitcheck regresscheck-list control-version dist

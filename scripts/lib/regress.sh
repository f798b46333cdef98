# The pg_regress suite (sql/, expected/) through make installcheck, on a
# throw-away cluster. Source after cluster.sh, from the top of the tree:
#   regress_plain DIR         # a cluster with nothing configured
#   regress_configured DIR    # a cluster configured as a production server is
# Each prints pg_regress's output (kept in DIR.out) and the differences, and
# ends with the line "regress: N passed, M failed".

# Runs make installcheck on the cluster in PGHOST/PGPORT and counts its files.
regress_installcheck() {   # OUT
    local out=$1 total bad
    rm -f regression.diffs
    make -s installcheck >"$out" 2>&1
    cat "$out"
    [ -f regression.diffs ] && head -100 regression.diffs
    total=$(sed -n 's/.*All \([0-9]*\) tests passed.*/\1/p; s/.* of \([0-9]*\) tests failed.*/\1/p' "$out")
    bad=$(sed -n 's/.* \([0-9]*\) of [0-9]* tests failed.*/\1/p' "$out")
    if [ -z "$total" ]; then total=1 bad=1; fi
    echo "regress: $(( total - ${bad:-0} )) passed, ${bad:-0} failed"
}

regress_plain() {   # DIR
    local dir=$1
    cluster_start "$dir" || { echo "regress: 0 passed, 1 failed"; return; }
    regress_installcheck "$dir.out"
    cluster_stop "$dir"
}

# What a DBA's server has when they run make installcheck on it: the library
# and pg_cron preloaded, the worker running — here in contrib_regression,
# the very database pg_regress drops and re-creates, so it must not block
# the drop —, and the settings the README sets with ALTER SYSTEM: a
# registry URL (nothing listens there), a key file, the summaries at INFO
# (a level that reaches clients unless hidden from them), the request
# timeouts changed.
regress_configured_setup() {   # DIR
    local dir=$1 key=$1/registry.key activity
    # The settings of modules not loaded yet: on the command line.
    cluster_start "$dir" -c cron.database_name=postgres \
        -c registry_migration.database=contrib_regression || return 1
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$key" 2>/dev/null || return 1
    [ "$(id -u)" -eq 0 ] && chown postgres "$key"
    chmod 600 "$key"
    # The database exists before the worker starts, so that it connects at
    # once (instead of after a failed attempt and a back-off).
    # (Loading the library refuses registry_migration.database until it is
    # preloaded, with a warning each session: not shown.)
    PGOPTIONS='-c client_min_messages=error' psql -X -q -v ON_ERROR_STOP=1 -d postgres <<SQL || return 1
CREATE DATABASE contrib_regression;
ALTER SYSTEM SET shared_preload_libraries = registry_migration, pg_cron;
LOAD 'registry_migration';
ALTER SYSTEM SET registry_migration.registry_url = 'http://127.0.0.1:9';
ALTER SYSTEM SET registry_migration.jwt_private_key_file = '$key';
ALTER SYSTEM SET registry_migration.log_level = 'info';
ALTER SYSTEM SET registry_migration.connect_timeout = '500ms';
ALTER SYSTEM SET registry_migration.request_timeout = '3s';
\c contrib_regression
CREATE EXTENSION registry_migration;
SQL
    cluster_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w restart >/dev/null || return 1
    psql -X -q -v ON_ERROR_STOP=1 -d postgres -c 'CREATE EXTENSION pg_cron' || return 1
    # The suite starts only once the worker is connected there and waiting.
    for _ in $(seq 60); do
        activity=$(psql -X -At -d contrib_regression -c \
            "SELECT activity FROM registry_migration.worker_status WHERE database = 'contrib_regression'")
        [ "$activity" = waiting ] && return 0
        sleep 0.5
    done
    echo "the worker did not connect to contrib_regression (activity: ${activity:-none})"
    return 1
}

regress_configured() {   # DIR
    local dir=$1
    regress_configured_setup "$dir" || { cluster_stop "$dir"; echo "regress: 0 passed, 1 failed"; return; }
    regress_installcheck "$dir.out"
    cluster_stop "$dir"
}

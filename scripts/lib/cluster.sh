# Throw-away PostgreSQL 15 clusters for the demo, the tests and the
# benchmarks. Source this file, then:
#   cluster_start DIR [-c name=value ...]   # initdb + start; exports PGHOST, PGPORT, PGUSER, PGDATABASE
#   cluster_stop DIR                        # stop and remove
# As root the cluster runs as the "postgres" user (initdb refuses root).

PG_BIN=/usr/lib/postgresql/15/bin

# Run a command as the cluster's owner.
cluster_as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cluster_start() {
    local dir=$1; shift
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres "$dir"
    cluster_as_owner "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log"; return 1; }
    # The server listens only on a socket in its own directory, so the port
    # number never collides with another server.
    export PGHOST=$dir PGPORT=5432 PGUSER=postgres PGDATABASE=postgres
    cluster_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start \
        -o "-p $PGPORT -k $dir -c listen_addresses='' -c fsync=off $*" >/dev/null \
        || { cat "$dir/server.log"; return 1; }
}

cluster_stop() {
    local dir=$1
    [ -d "$dir/data" ] && cluster_as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1
    rm -rf "$dir"
}

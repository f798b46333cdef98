# A work directory and background services (the registry simulator, the
# notification receiver) for the demo and the benchmarks, all removed at
# exit together with the throw-away cluster in "$dir/pg". Source after
# scripts/lib/cluster.sh, then:
#   services_init NAME                        # makes $dir; sets the exit trap
#   start_with_port PORT_FILE COMMAND...      # starts COMMAND, waits for its port file

services_init() {
    service_name=$1
    dir=$(mktemp -d "/tmp/registry_migration_$1.XXXXXX")
    chmod 755 "$dir"
    service_pids=()
    trap services_cleanup EXIT
    trap 'exit 130' INT TERM
}

services_cleanup() {
    set +e
    for pid in "${service_pids[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    cluster_stop "$dir/pg"
    rm -rf "$dir"
}

start_with_port() {
    local port_file=$1; shift
    "$@" &
    service_pids+=($!)
    for _ in $(seq 100); do [ -s "$port_file" ] && return 0; sleep 0.1; done
    echo "$service_name: $1 did not start" >&2
    return 1
}

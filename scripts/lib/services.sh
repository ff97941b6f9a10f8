# Throw-away PostgreSQL and S3 (moto) servers on 127.0.0.1, for the scaled-out test pass.
# Source this file, call start_postgres and start_s3, and stop_services when done (scripts/test
# does it on exit). Each exports the variables the tests read:
#   BERTH_TEST_POSTGRES_URL   an administrator's URL (tests create a database each)
#   BERTH_TEST_S3_ENDPOINT    the S3 endpoint (tests create a bucket each), with AWS_* set

services_dir=""
moto_pid=""

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# As the postgres account when root (PostgreSQL refuses to run as root), else as ourselves.
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
    local bin initdb
    initdb="$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -1 || true)"
    [ -n "$initdb" ] || initdb="$(command -v initdb)"
    bin="$(dirname "$initdb")"
    services_dir="${services_dir:-$(mktemp -d /tmp/berth-services.XXXXXX)}"
    chmod 755 "$services_dir"
    mkdir -p "$services_dir/pg"
    [ "$(id -u)" = 0 ] && chown postgres "$services_dir/pg"
    as_pg "$bin/initdb" -D "$services_dir/pg/data" -A trust -U postgres >/dev/null
    local port
    port="$(free_port)"
    as_pg "$bin/pg_ctl" -D "$services_dir/pg/data" -l "$services_dir/pg/log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $services_dir/pg -c fsync=off" start >/dev/null
    export BERTH_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres"
    PG_BIN="$bin"
    echo "==> PostgreSQL on 127.0.0.1:$port"
}

start_s3() {
    services_dir="${services_dir:-$(mktemp -d /tmp/berth-services.XXXXXX)}"
    local port
    port="$(free_port)"
    "$BERTH_TEST_MOTO_SERVER" -H 127.0.0.1 -p "$port" >"$services_dir/moto.log" 2>&1 &
    moto_pid=$!
    for _ in $(seq 100); do
        curl -fsS -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null && break
        sleep 0.1
    done
    export BERTH_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
    export AWS_ACCESS_KEY_ID=berth-test AWS_SECRET_ACCESS_KEY=berth-test AWS_DEFAULT_REGION=us-east-1
    echo "==> S3 (moto) on 127.0.0.1:$port"
}

stop_services() {
    if [ -n "$moto_pid" ]; then
        kill "$moto_pid" 2>/dev/null || true
        wait "$moto_pid" 2>/dev/null || true
        moto_pid=""
    fi
    if [ -n "$services_dir" ] && [ -d "$services_dir/pg/data" ]; then
        as_pg "$PG_BIN/pg_ctl" -D "$services_dir/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    [ -n "$services_dir" ] && rm -rf "$services_dir"
    services_dir=""
}

# Shared by deploy/local/up, down and test. Sourced, not run.
#
# Settings (environment, all optional):
#   HOTLINE_PG_PORT      PostgreSQL port (default 5432); a server already answering there is used as is
#   HOTLINE_KAFKA_PORT   broker port (default 9092); a broker already answering there is used as is
#   HOTLINE_HTTP_PORT    API port (default 8080)
#   HOTLINE_DATA_DIR     where a PostgreSQL cluster and tansu's data are created if needed
#                        (default deploy/local/.state)
#   HOTLINE_DB_NAME      database name (default hotline)

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PG_PORT=${HOTLINE_PG_PORT:-5432}
KAFKA_PORT=${HOTLINE_KAFKA_PORT:-9092}
HTTP_PORT=${HOTLINE_HTTP_PORT:-8080}
DATA_DIR=${HOTLINE_DATA_DIR:-$ROOT/deploy/local/.state}
DB_NAME=${HOTLINE_DB_NAME:-hotline}
TANSU_VERSION=0.6.0
CARGO_BIN=${CARGO_HOME:-$HOME/.cargo}/bin
export PATH="$CARGO_BIN:$PATH"

log() { printf '[hotline] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 what=$2 tries=${3:-100}
  for _ in $(seq "$tries"); do
    port_open "$port" && return 0
    sleep 0.2
  done
  die "$what did not start on port $port"
}

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

ensure_tansu() {
  if command -v tansu >/dev/null && tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    return
  fi
  log "installing tansu $TANSU_VERSION (a Kafka-protocol broker) into $CARGO_BIN; ~12 minutes the first time"
  cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore,libsql >&2
}

pg_bindir() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

ensure_postgres() {
  if port_open "$PG_PORT"; then
    log "PostgreSQL answers on port $PG_PORT; using it"
    return
  fi
  if [ -z "$(pg_bindir)" ]; then
    log "installing PostgreSQL from Debian packages"
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    else
      sudo apt-get update -qq >&2 && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    fi
  fi
  local bin pgdata
  bin=$(pg_bindir)
  pgdata="$DATA_DIR/postgres"
  mkdir -p "$DATA_DIR"
  if [ ! -f "$pgdata/PG_VERSION" ]; then
    log "creating a PostgreSQL cluster in $pgdata"
    mkdir -p "$pgdata"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$pgdata" "$DATA_DIR"
    as_postgres "$bin/initdb" -D "$pgdata" -U postgres -A trust --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  fi
  log "starting PostgreSQL on port $PG_PORT"
  as_postgres "$bin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w \
    -o "-p $PG_PORT -k /tmp -c listen_addresses=127.0.0.1" start >/dev/null
  echo "$pgdata" > "$DATA_DIR/postgres.started"
}

ensure_broker() {
  if port_open "$KAFKA_PORT"; then
    log "a broker answers on port $KAFKA_PORT; using it"
    return
  fi
  ensure_tansu
  mkdir -p "$DATA_DIR/tansu"
  log "starting tansu on port $KAFKA_PORT (data in $DATA_DIR/tansu)"
  # tansu resolves sqlite:// paths against its working directory.
  (
    cd "$DATA_DIR/tansu"
    nohup tansu broker \
      --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
      --storage-engine "sqlite://tansu.db" < /dev/null > tansu.log 2>&1 &
    echo $! > "$DATA_DIR/tansu.pid"
  )
  wait_port "$KAFKA_PORT" tansu
}

HOTLINE_BIN=${HOTLINE_BIN:-$ROOT/target/debug/hotline}

# HOTLINE_SKIP_BUILD=1: use the binary already built (the tests set it: they run inside cargo,
# which holds the build lock).
build() {
  if [ "${HOTLINE_SKIP_BUILD:-}" = 1 ]; then
    [ -x "$HOTLINE_BIN" ] || die "HOTLINE_SKIP_BUILD=1 but $HOTLINE_BIN is not built"
    return
  fi
  log "building Hotline"
  (cd "$ROOT" && cargo build --locked --bin hotline >&2)
}

export_stack_env() {
  export HOTLINE_DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$DB_NAME"
  export HOTLINE_KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
  export HOTLINE_HTTP_ADDR="127.0.0.1:$HTTP_PORT"
}

# Writes where the stack is, so that `hotline token issue` and the other commands find it.
write_stack_env() {
  local file="${XDG_STATE_HOME:-$HOME/.local/state}/hotline/local.env"
  mkdir -p "$(dirname "$file")"
  {
    echo "# written by deploy/local/up; read by the hotline CLI when these are not set"
    echo "HOTLINE_DATABASE_URL=$HOTLINE_DATABASE_URL"
    echo "HOTLINE_KAFKA_BROKERS=$HOTLINE_KAFKA_BROKERS"
    echo "HOTLINE_HTTP_ADDR=$HOTLINE_HTTP_ADDR"
  } > "$file"
}

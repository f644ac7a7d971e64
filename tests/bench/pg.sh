#!/usr/bin/env bash
# A private PostgreSQL for the benchmarks, on loopback only.
#
#   bash tests/bench/pg.sh start DIR [PORT]   initdb into DIR (once), start it, print its URL
#   bash tests/bench/pg.sh url DIR            print the URL of the cluster running in DIR
#   bash tests/bench/pg.sh newdb DIR          create a fresh database there; print its URL
#   bash tests/bench/pg.sh fresh DIR          start (as above), then newdb: one server's store
#   bash tests/bench/pg.sh psql DIR ARGS...   psql on its default database
#   bash tests/bench/pg.sh stop DIR           stop it (DIR is left for the caller to remove)
#
# PG_TLS=1 (at start, and for url/newdb/fresh): the server also serves TLS (ssl = on) with a
# certificate for 127.0.0.1 from a CA made in DIR with openssl, and the URLs carry
# sslmode=verify-full&sslrootcert=DIR/ca.crt, so the sidecar connects as in production.
#
# PostgreSQL is pinned to PG_CPU (default 1, the load generator's core), so the sidecar keeps
# its own core as in the SQLite runs. Settings are the Debian defaults (fsync and
# synchronous_commit on) except max_connections=200 and pg_stat_statements loaded (the
# benchmarks count statements per request with it); DIR on tmpfs makes fsync cheap, as the
# SQLite runs' tmpfs database does. As root, the server runs as the `postgres` user.
set -euo pipefail
cmd=${1:?usage: pg.sh start|fresh|url|newdb|psql|stop DIR [PORT]}
DIR=${2:?usage: pg.sh start|fresh|url|newdb|psql|stop DIR [PORT]}
PORT=${3:-15432}
PG_CPU=${PG_CPU:-1}
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x $BIN/initdb ]] || { echo "PostgreSQL server binaries not found: apt-get install postgresql" >&2; exit 1; }
as_pg() { if ((EUID == 0)); then runuser -u postgres -- "$@"; else "$@"; fi; }
url() {
  local tls=""
  [[ ${PG_TLS:-0} == 1 ]] && tls="?sslmode=verify-full&sslrootcert=$DIR/ca.crt"
  echo "postgres://chatsdk@127.0.0.1:$(cat "$DIR/port")/${1:-chatsdk}$tls"
}
# A CA and a server certificate for 127.0.0.1, made once in DIR.
certs() {
  [[ -f $DIR/server.crt ]] && return
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -days 30 \
    -subj /CN=chatsdk-bench-ca -keyout "$DIR/ca.key" -out "$DIR/ca.crt" 2>/dev/null
  openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -subj /CN=127.0.0.1 \
    -keyout "$DIR/server.key" -out "$DIR/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$DIR/server.ext"
  openssl x509 -req -in "$DIR/server.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" -CAcreateserial \
    -days 30 -extfile "$DIR/server.ext" -out "$DIR/server.crt" 2>/dev/null
  chmod 600 "$DIR/server.key"
  ((EUID == 0)) && chown postgres:postgres "$DIR/server.key" "$DIR/server.crt"
  return 0
}

case $cmd in
start)
  mkdir -p "$DIR"
  if ((EUID == 0)); then
    chown postgres:postgres "$DIR"
    chmod o+x "$(dirname "$DIR")" # a mktemp -d parent is 0700; postgres must reach DIR
  fi
  if [[ ! -f $DIR/data/PG_VERSION ]]; then
    as_pg "$BIN/initdb" -D "$DIR/data" -U chatsdk --auth=trust -E UTF8 --no-instructions >/dev/null
  fi
  echo "$PORT" >"$DIR/port"
  ssl=""
  if [[ ${PG_TLS:-0} == 1 ]]; then
    certs
    ssl="-c ssl=on -c ssl_cert_file=$DIR/server.crt -c ssl_key_file=$DIR/server.key"
  fi
  as_pg taskset -c "$PG_CPU" "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w \
    -o "-p $PORT -k $DIR -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_preload_libraries=pg_stat_statements $ssl" start >/dev/null
  as_pg "$BIN/psql" -qAt -h 127.0.0.1 -p "$PORT" -U chatsdk -d postgres \
    -c "SELECT 1 FROM pg_database WHERE datname = 'chatsdk'" | grep -q 1 ||
    as_pg "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U chatsdk chatsdk
  as_pg "$BIN/psql" -qAt -h 127.0.0.1 -p "$PORT" -U chatsdk -d chatsdk \
    -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" >/dev/null
  url
  ;;
url) url ;;
fresh)
  bash "$0" start "$DIR" "$PORT" >/dev/null
  exec bash "$0" newdb "$DIR"
  ;;
newdb)
  name=bench_$(date +%s%N)
  as_pg "$BIN/createdb" -h 127.0.0.1 -p "$(cat "$DIR/port")" -U chatsdk "$name"
  url "$name"
  ;;
psql)
  shift 2
  as_pg "$BIN/psql" -h 127.0.0.1 -p "$(cat "$DIR/port")" -U chatsdk -d chatsdk "$@"
  ;;
stop) as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null ;;
*) echo "unknown command $cmd" >&2; exit 2 ;;
esac

#!/usr/bin/env bash
# End-to-end load benchmark: bash tests/bench/load.sh
#
# Builds the dist binary (`--profile dist`, what operators deploy) and the seeder
# (tests/bench/seed.rs), seeds a world through the service's own store code and keys, starts
# the server (pinned to CPU 0, wrk to CPU 1, access log on at info, the per-user mint limit on
# but raised above the load) and loads, one wrk thread, CONNECTIONS keep-alive connections:
#   tokens   POST /tokens, userId drawn at random from user-1..user-USERS (existing users)
#   connect  POST /centrifugo/connect with the TOKENS wsTokens the seeder signed
#   refresh  POST /centrifugo/refresh for the users of those tokens
#   verify   GET /verify with the TOKENS REST tokens signed with them
# and prints req/s, p50/p99, non-2xx (never counted as served), the CPU share of the server,
# of wrk and (BACKEND=postgres) of PostgreSQL, with PostgreSQL's CPU per request (its
# postmaster and backends, from /proc/<pid>/stat) and statements per request (pg_stat_statements,
# the benchmark database's calls), the server's peak RSS and, on SQLite, the size of the WAL
# file at the end. CHATSDK_AUTH_STORAGE__POSTGRES_COALESCE=false and the other settings pass
# through to the server (an A/B run of coalesced lookups).
#
# Knobs (env):
#   BACKEND=sqlite|postgres  postgres: a private cluster (tests/bench/pg.sh) in DB_DIR, pinned
#                            to CPU 1 beside wrk, a fresh database per run; PG_TLS=1 serves
#                            it over TLS and connects with sslmode=verify-full
#   DB_DIR=/dev/shm          where the data lives; a disk path (e.g. /var/tmp) includes fsyncs
#   SEED=10000 USERS=SEED TOKENS=1000  world size, /tokens id pool, signed token pairs
#   ORDER=random|once        random: replay the token pool at random (default); once: use the
#                            tokens in order, each once (a reconnect storm; wraps only when the
#                            run outlasts the pool, which is reported)
#   ENDPOINTS="tokens connect refresh verify"  DURATION=10 CONNECTIONS=32 PORT=18181
#   MINT_PER_USER_PER_MINUTE=100000            the per-user limit (on, above the load)
#   BIN=path                 another build of the server (A/B runs)
# Only 127.0.0.1; every wrk run is bounded by DURATION.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
PORT=${PORT:-18181}
DB_DIR=${DB_DIR:-/dev/shm}
BACKEND=${BACKEND:-sqlite}
SEED=${SEED:-10000}
USERS=${USERS:-$SEED}
TOKENS=${TOKENS:-1000}
ORDER=${ORDER:-random}
ENDPOINTS=${ENDPOINTS:-tokens connect refresh verify}
((USERS <= SEED)) || { echo "USERS ($USERS) must not exceed SEED ($SEED): /tokens would insert" >&2; exit 2; }

command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
# BIN=path runs another build of the server (an A/B run); the seeder is always this tree's.
[[ -n ${BIN:-} ]] || cargo build --profile dist --locked -q
SEEDER=$(cargo bench --profile dist --locked -q --bench seed --no-run --message-format=json |
  grep '"name":"seed"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[[ -x $SEEDER ]] || { echo "could not build the seeder (tests/bench/seed.rs)" >&2; exit 1; }
BIN=${BIN:-$ROOT/target/dist/chatsdk-auth}
WORK=$(mktemp -d "$DB_DIR/chatsdk-load.XXXXXX")
SCRIPTS=$(mktemp -d)
PID="" PG=""
cleanup() {
  [[ -n $PID ]] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  [[ -n $PG ]] && bash "$ROOT/tests/bench/pg.sh" stop "$PG"
  rm -rf "$WORK" "$SCRIPTS"
}
trap cleanup EXIT

rand() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
export CHATSDK_AUTH_SERVER__LISTEN=127.0.0.1:$PORT CHATSDK_AUTH_LOG__FORMAT=json CHATSDK_AUTH_LOG__LEVEL=info
export CHATSDK_AUTH_STORAGE__DATA_DIR=$WORK/data
export CHATSDK_AUTH_SECRETS__REST_KEY=$(rand) CHATSDK_AUTH_SECRETS__CENTRIFUGO_KEY=$(rand)
export CHATSDK_AUTH_SECRETS__PROXY_SECRET=$(rand)
KEY=chatsdk_$(rand)
export CHATSDK_AUTH_SECRETS__INITIAL_API_KEY=$KEY
export CHATSDK_AUTH_LIMITS__MINT_PER_USER_PER_MINUTE=${MINT_PER_USER_PER_MINUTE:-100000}
if [[ $BACKEND == postgres ]]; then
  PG=$WORK/pg
  CHATSDK_AUTH_STORAGE__POSTGRES_URL=$(bash tests/bench/pg.sh fresh "$PG")
  PG_DB=${CHATSDK_AUTH_STORAGE__POSTGRES_URL##*/}
  PG_DB=${PG_DB%%\?*}
  export CHATSDK_AUTH_STORAGE__BACKEND=postgres CHATSDK_AUTH_STORAGE__POSTGRES_URL
fi
mkdir -p "$WORK/data"

# The seeder runs where the server will (no config file there: defaults + the env above).
(cd "$WORK" && "$SEEDER" --users "$SEED" --tokens "$TOKENS" --out "$SCRIPTS")
(cd "$WORK" && exec taskset -c 0 "$BIN" serve) 2>"$WORK/server.log" &
PID=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.05; done
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { tail "$WORK/server.log"; exit 1; }

# Requests are pre-formatted in init(); request() only picks one.
pick='if order == "once" then i = i + 1; if i > n then i = 1; wraps = wraps + 1 end; return reqs[i] end
  return reqs[math.random(n)]'
common="reqs, n, i, order, wraps = {}, 0, 0, \"$ORDER\", 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do io.stderr:write(string.format(\"%d tokens, used each in order; wrapped %d times\\n\", t:get(\"n\"), t:get(\"wraps\"))) end
end"
cat >"$SCRIPTS/tokens.lua" <<LUA
$common
function init(args)
  math.randomseed(os.time())
  for k = 1, $USERS do
    reqs[k] = wrk.format("POST", "/tokens", {["Content-Type"] = "application/json", ["X-API-Key"] = "$KEY"},
      string.format('{"userId":"user-%d","name":"Alice","image":"https://example.com/avatars/alice.png","custom":{"department":"Engineering"}}', k))
  end
  n = $USERS
  order = "random"
end
function request() $pick end
LUA
cat >"$SCRIPTS/verify.lua" <<LUA
$common
function init(args)
  math.randomseed(os.time())
  for tok in io.lines("$SCRIPTS/resttokens.txt") do
    n = n + 1
    reqs[n] = wrk.format("GET", "/verify", {["Authorization"] = "Bearer " .. tok, ["X-Original-URI"] = "/api/messages"})
  end
end
function request() $pick end
LUA
for mode in connect refresh; do
  cat >"$SCRIPTS/$mode.lua" <<LUA
$common
function init(args)
  math.randomseed(os.time())
  for tok in io.lines("$SCRIPTS/wstokens.txt") do
    n = n + 1
    local body
    if "$mode" == "connect" then
      body = '{"client":"c-' .. n .. '","transport":"websocket","protocol":"json","encoding":"json","data":{"token":"' .. tok .. '"}}'
    else
      body = '{"client":"c-' .. n .. '","transport":"websocket","protocol":"json","encoding":"json","user":"user-' .. ((n * 7 - 1) % $SEED + 1) .. '","meta":{"iat":1}}'
    end
    reqs[n] = wrk.format("POST", "/centrifugo/$mode",
      {["Content-Type"] = "application/json", ["X-Chatsdk-Proxy-Secret"] = "$CHATSDK_AUTH_SECRETS__PROXY_SECRET"}, body)
  end
end
function request() $pick end
LUA
done

ticks() { awk '{ print $14 + $15 }' "/proc/$PID/stat"; }
pg_sql() { bash "$ROOT/tests/bench/pg.sh" psql "$PG" -qAt -c "$1"; }
# PostgreSQL: CPU ticks of the postmaster and its backends.
# Backends come and go (autovacuum workers): one that exits between ps and cat is skipped.
pg_ticks() {
  local pm p
  pm=$(head -1 "$PG/data/postmaster.pid")
  for p in "$pm" $(ps -o pid= --ppid "$pm"); do cat "/proc/$p/stat" 2>/dev/null || true; done |
    awk '{ s += $14 + $15 } END { print s }'
}

hz=$(getconf CLK_TCK)
echo "backend=$BACKEND seed=$SEED users=$USERS tokens=$TOKENS order=$ORDER db_dir=$DB_DIR duration=${DURATION}s connections=$CONNECTIONS"
printf '%-9s %10s %9s %9s %8s %8s %8s' endpoint req/s p50_ms p99_ms non2xx srv_cpu wrk_cpu
[[ -n $PG ]] && printf ' %8s %10s %9s' pg_cpu pg_us/req stmt/req
echo
for ep in $ENDPOINTS; do
  # A storm's tokens are each used once: no warm-up run spends them.
  [[ $ORDER == once && $ep != tokens ]] || taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s -s "$SCRIPTS/$ep.lua" "http://127.0.0.1:$PORT" >/dev/null 2>&1
  [[ -n $PG ]] && { pg_sql "SELECT pg_stat_statements_reset()" >/dev/null; p0=$(pg_ticks); }
  t0=$(ticks) s0=$(date +%s.%N)
  # `times` in the subshell: the CPU wrk used (its second line: children's user and system).
  out=$(
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$SCRIPTS/$ep.lua" "http://127.0.0.1:$PORT" 2>"$SCRIPTS/$ep.err"
    times >"$SCRIPTS/$ep.times"
  )
  t1=$(ticks) s1=$(date +%s.%N)
  [[ -n $PG ]] && p1=$(pg_ticks)
  rps=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
  ms() { awk -v p="$1" '$1 == p { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 } printf "%.2f", v }' <<<"$out"; }
  bad=$(awk '/Non-2xx/ { print $NF }' <<<"$out")
  cpu=$(awk -v a="$t0" -v b="$t1" -v s="$s0" -v e="$s1" -v hz="$hz" 'BEGIN { printf "%.0f%%", 100 * (b - a) / hz / (e - s) }')
  wrk_cpu=$(awk -v s="$s0" -v e="$s1" 'NR == 2 { split($1, u, /[ms]/); split($2, y, /[ms]/)
    printf "%.0f%%", 100 * (u[1] * 60 + u[2] + y[1] * 60 + y[2]) / (e - s) }' "$SCRIPTS/$ep.times")
  printf '%-9s %10s %9s %9s %8s %8s %8s' "$ep" "$rps" "$(ms 50%)" "$(ms 99%)" "${bad:-0}" "$cpu" "$wrk_cpu"
  if [[ -n $PG ]]; then
    done_reqs=$(awk '/requests in/ { print $1 }' <<<"$out")
    stmts=$(pg_sql "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '$PG_DB')")
    awk -v a="$p0" -v b="$p1" -v s="$s0" -v e="$s1" -v hz="$hz" -v n="${done_reqs:-0}" -v st="$stmts" 'BEGIN {
      printf " %7.0f%% %10.1f %9.3f", 100 * (b - a) / hz / (e - s), n ? 1e6 * (b - a) / hz / n : 0, n ? st / n : 0 }'
  fi
  [[ $ORDER == once && $ep != tokens ]] && printf '  (%s)' "$(tail -1 "$SCRIPTS/$ep.err")"
  echo
done
echo "peak RSS: $(awk '/VmHWM/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$PID/status"), now $(awk '/VmRSS/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$PID/status")"
if [[ $BACKEND == sqlite ]]; then
  wal=$WORK/data/chatsdk-auth.db-wal
  echo "SQLite: $(du -h "$WORK/data/chatsdk-auth.db" | cut -f1) database, WAL $(stat -c %s "$wal" 2>/dev/null || echo 0) bytes"
fi

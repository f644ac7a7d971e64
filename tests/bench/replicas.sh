#!/usr/bin/env bash
# Replicas on one PostgreSQL in a reconnect storm: bash tests/bench/replicas.sh
#
# One private PostgreSQL (tests/bench/pg.sh, pinned to CPU 1 beside wrk), seeded once as
# tests/bench/load.sh seeds it (SEED users, TOKENS distinct wsTokens, the seeder of
# tests/bench/seed.rs), then, for each round and each entry of REPLICAS: R replicas of the dist
# binary, each on its own port and data directory, the same database and the same secrets and
# signing keys (load.sh's settings, plus one key-encryption secret for all), all pinned to
# CPU 0 with taskset (on a 2-core machine the replicas share one core: the figure is then
# PostgreSQL's cost per connect as replicas are added, and which core is the bound). WRKS wrk
# processes (one thread each, started together, the same DURATION; process k aims at replica
# k % R + 1) post /centrifugo/connect, each with its own share of the token pool in order,
# each token once (wraps are reported). The pool is the same in every run: tokens repeat
# between runs, never within one. Prints per run: aggregate req/s (the sum over the wrks),
# the worst wrk's p50/p99, non-2xx, the replicas' CPU (all of them, share of one core),
# PostgreSQL's CPU share and CPU per connect (postmaster and backends, /proc/<pid>/stat),
# statements per connect (pg_stat_statements calls in the benchmark database) and how busy
# CPU 0 and CPU 1 were (/proc/stat), over the window in which every wrk is loading.
#
# Knobs (env): REPLICAS="1/96 3/96" (R/C: R replicas, C connections in all; R alone: 32 per
#   replica) ROUNDS=3 DURATION=5 WRKS=3 SEED=10000 TOKENS=1000000
#   PORT=18191 (replica k listens on PORT+k) DB_DIR=/dev/shm
#   BIN=path (default target/dist/chatsdk-auth) SEEDER=path (default: built as load.sh does)
# Other CHATSDK_AUTH_* settings pass through to every replica.
# Only 127.0.0.1; every wrk run is bounded by DURATION; everything started is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
REPLICAS=${REPLICAS:-1/96 3/96}
WRKS=${WRKS:-3}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-32}
SEED=${SEED:-10000}
TOKENS=${TOKENS:-1000000}
PORT=${PORT:-18191}
DB_DIR=${DB_DIR:-/dev/shm}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
BIN=${BIN:-$ROOT/target/dist/chatsdk-auth}
[[ -x $BIN ]] || { echo "no binary at $BIN: cargo build --profile dist" >&2; exit 2; }
if [[ -z ${SEEDER:-} ]]; then
  SEEDER=$(cargo bench --profile dist --locked -q --bench seed --no-run --message-format=json |
    grep '"name":"seed"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
fi
[[ -x $SEEDER ]] || { echo "could not build the seeder (tests/bench/seed.rs)" >&2; exit 1; }
WORK=$(mktemp -d "$DB_DIR/chatsdk-replicas.XXXXXX")
PIDS=()
stop_replicas() {
  local p
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}
cleanup() {
  stop_replicas
  bash "$ROOT/tests/bench/pg.sh" stop "$WORK/pg" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

rand() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
export CHATSDK_AUTH_LOG__FORMAT=json CHATSDK_AUTH_LOG__LEVEL=info
export CHATSDK_AUTH_SECRETS__REST_KEY=$(rand) CHATSDK_AUTH_SECRETS__CENTRIFUGO_KEY=$(rand)
export CHATSDK_AUTH_SECRETS__PROXY_SECRET=$(rand)
# The signing keys in PostgreSQL are sealed with this: every replica (and the seeder) shares it.
export CHATSDK_AUTH_SECRETS__KEY_ENCRYPTION_KEY=$(rand)
export CHATSDK_AUTH_SECRETS__INITIAL_API_KEY=chatsdk_$(rand)
export CHATSDK_AUTH_LIMITS__MINT_PER_USER_PER_MINUTE=${MINT_PER_USER_PER_MINUTE:-100000}
export CHATSDK_AUTH_STORAGE__BACKEND=postgres
PG=$WORK/pg
CHATSDK_AUTH_STORAGE__POSTGRES_URL=$(bash tests/bench/pg.sh fresh "$PG")
export CHATSDK_AUTH_STORAGE__POSTGRES_URL
PG_DB=${CHATSDK_AUTH_STORAGE__POSTGRES_URL##*/}
PG_DB=${PG_DB%%\?*}

mkdir -p "$WORK/seed"
(cd "$WORK/seed" && CHATSDK_AUTH_STORAGE__DATA_DIR=$WORK/seed "$SEEDER" --users "$SEED" --tokens "$TOKENS" --out "$WORK")

# wrk process k (0-based, of WRKS) aims at replica k % R + 1 with the tokens on lines k+1,
# k+1+WRKS, ... (its file, split here), in order; each marks when its requests are formatted.
awk -v w="$WRKS" -v d="$WORK" '{ print > (d "/tokens." ((NR - 1) % w)) }' "$WORK/wstokens.txt"
cat >"$WORK/storm.lua" <<LUA
function init(args)
  reqs, n, i, wraps = {}, 0, 0, 0
  local k = os.getenv("STORM_K")
  for tok in io.lines("$WORK/tokens." .. k) do
    n = n + 1
    local body = '{"client":"c-' .. k .. '-' .. n .. '","transport":"websocket","protocol":"json","encoding":"json","data":{"token":"' .. tok .. '"}}'
    reqs[n] = wrk.format("POST", "/centrifugo/connect",
      {["Content-Type"] = "application/json", ["X-Chatsdk-Proxy-Secret"] = "$CHATSDK_AUTH_SECRETS__PROXY_SECRET"}, body)
  end
  io.open("$WORK/ready." .. k, "w"):close()
end
function request()
  i = i + 1
  if i > n then i = 1; wraps = wraps + 1 end
  return reqs[i]
end
LUA

ticks() { # pids... -> CPU ticks
  local p
  for p in "$@"; do cat "/proc/$p/stat" 2>/dev/null || true; done | awk '{ s += $14 + $15 } END { print s + 0 }'
}
pg_pids() {
  local pm
  pm=$(head -1 "$PG/data/postmaster.pid")
  echo "$pm" $(ps -o pid= --ppid "$pm")
}
pg_sql() { bash "$ROOT/tests/bench/pg.sh" psql "$PG" -qAt -c "$1"; }
ms() { awk -v p="$1" '$1 == p { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 } printf "%.2f\n", v }' <<<"$2"; }
# Busy ticks of CPU 0 and CPU 1 (all but idle and iowait), from /proc/stat.
cpus() { awk '$1 == "cpu0" || $1 == "cpu1" { printf "%d ", $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
hz=$(getconf CLK_TCK)

run() { # R or R/C (C connections in all; default CONNECTIONS per replica)
  local r=${1%%/*} c=$((CONNECTIONS * ${1%%/*})) k
  [[ $1 == */* ]] && c=${1#*/}
  for ((k = 1; k <= r; k++)); do
    mkdir -p "$WORK/r$k"
    (cd "$WORK/r$k" && CHATSDK_AUTH_SERVER__LISTEN=127.0.0.1:$((PORT + k)) CHATSDK_AUTH_STORAGE__DATA_DIR=$WORK/r$k \
      exec taskset -c 0 "$BIN" serve) 2>"$WORK/r$k.log" &
    PIDS+=($!)
  done
  for ((k = 1; k <= r; k++)); do
    for _ in $(seq 200); do curl -sf "http://127.0.0.1:$((PORT + k))/readyz" >/dev/null && break; sleep 0.05; done
    curl -sf "http://127.0.0.1:$((PORT + k))/readyz" >/dev/null || { tail -3 "$WORK/r$k.log" >&2; exit 1; }
  done
  pg_sql "SELECT pg_stat_statements_reset()" >/dev/null
  rm -f "$WORK"/ready.*
  local wrks=() p0 p1 t0 t1 c0 c1 s0 s1 out stmts done_reqs bad
  for ((k = 0; k < WRKS; k++)); do
    STORM_K=$k taskset -c 1 wrk -t1 -c$((c / WRKS)) -d"${DURATION}s" --latency -s "$WORK/storm.lua" \
      "http://127.0.0.1:$((PORT + k % r + 1))" >"$WORK/wrk.$k.out" 2>&1 &
    wrks+=($!)
  done
  # The window opens when every wrk has its requests formatted and closes when all are done.
  for _ in $(seq 600); do (($(ls "$WORK"/ready.* 2>/dev/null | wc -l) == WRKS)) && break; sleep 0.01; done
  p0=$(ticks $(pg_pids)) t0=$(ticks "${PIDS[@]}") c0=$(cpus) s0=$(date +%s.%N)
  wait "${wrks[@]}"
  p1=$(ticks $(pg_pids)) t1=$(ticks "${PIDS[@]}") c1=$(cpus) s1=$(date +%s.%N)
  out=$(cat "$WORK"/wrk.*.out)
  stmts=$(pg_sql "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '$PG_DB')")
  done_reqs=$(awk '/requests in/ { s += $1 } END { print s }' <<<"$out")
  bad=$(awk '/Non-2xx/ { s += $NF } END { print s + 0 }' <<<"$out")
  printf '%-6s %8s %5s %10s %8s %8s %8s' "$round" "$r" "$c" "$(awk '/^Requests\/sec/ { s += $2 } END { printf "%.0f", s }' <<<"$out")" \
    "$(ms 50% "$out" | sort -n | tail -1)" "$(ms 99% "$out" | sort -n | tail -1)" "${bad:-0}"
  awk -v a="$t0" -v b="$t1" -v pa="$p0" -v pb="$p1" -v s="$s0" -v e="$s1" -v hz="$hz" -v n="${done_reqs:-0}" -v st="$stmts" \
    -v c0="$c0" -v c1="$c1" 'BEGIN {
    split(c0, x, " "); split(c1, y, " ")
    printf " %8.0f%% %7.0f%% %10.1f %9.3f %8.0f%% %8.0f%%", 100 * (b - a) / hz / (e - s), 100 * (pb - pa) / hz / (e - s),
      n ? 1e6 * (pb - pa) / hz / n : 0, n ? st / n : 0, 100 * (y[1] - x[1]) / hz / (e - s), 100 * (y[2] - x[2]) / hz / (e - s) }'
  echo "  wraps=$(awk -v n="$TOKENS" -v w="$WRKS" '/requests in/ { s += int($1 / (n / w)) } END { print s }' <<<"$out")"
  stop_replicas
}

echo "seed=$SEED tokens=$TOKENS duration=${DURATION}s wrks=$WRKS; replicas on CPU 0, PostgreSQL and wrk on CPU 1"
printf '%-6s %8s %5s %10s %8s %8s %8s %9s %8s %10s %9s %9s %9s\n' round replicas conns req/s p50_ms p99_ms non2xx repl_cpu pg_cpu pg_us/conn stmt/conn cpu0_busy cpu1_busy
for ((round = 1; round <= ROUNDS; round++)); do
  for r in $REPLICAS; do run "$r"; done
done

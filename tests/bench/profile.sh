#!/usr/bin/env bash
# Instruction profile of one endpoint under callgrind: bash tests/bench/profile.sh connect
#
# Instruction counts are repeatable on a noisy VM where wall-clock figures are not, so this is
# how a change to a hot path is judged before the load runs. It runs the dist binary (or BIN)
# under `valgrind --tool=callgrind` with one worker, as the benchmarks' single pinned core
# does, seeds a world with tests/bench/seed.rs, loads ENDPOINT (tokens, connect, refresh,
# verify) with wrk for DURATION seconds while collection is on, and prints instructions per
# request (user space only: the kernel's loopback work is not counted) and the functions with
# the most inclusive instructions. The callgrind file is kept in OUT for callgrind_annotate.
# Knobs: BIN, DURATION=20, CONNECTIONS=4, OUT=/tmp/chatsdk-profile, PORT=18182, TOP=60,
# BACKEND=postgres (a private cluster, tests/bench/pg.sh), CACHE_SIM=1 (also simulate the caches: misses per function, for callgrind_annotate --show),
# CUSTOM='{"role":"admin"}' (the users' stored `custom` and the one /tokens sends; default
# {"department":"Engineering"}), and any CHATSDK_AUTH_* setting (e.g.
# CHATSDK_AUTH_SEGMENTS__INFO_FIELDS='["role"]') passes through to the server.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
EP=${1:?usage: profile.sh tokens|connect|refresh|verify}
DURATION=${DURATION:-20}
CONNECTIONS=${CONNECTIONS:-4}
PORT=${PORT:-18182}
OUT=${OUT:-/tmp/chatsdk-profile}
CUSTOM=${CUSTOM:-'{"department":"Engineering"}'}
command -v valgrind >/dev/null || { echo "valgrind not found: apt-get install valgrind" >&2; exit 1; }
if [[ -z ${BIN:-} ]]; then
  cargo build --profile dist --locked -q
  BIN=$ROOT/target/dist/chatsdk-auth
fi
SEEDER=$(cargo bench --profile dist --locked -q --bench seed --no-run --message-format=json |
  grep '"name":"seed"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p')
mkdir -p "$OUT"
WORK=$(mktemp -d /dev/shm/chatsdk-profile.XXXXXX)
PID="" PG=""
cleanup() {
  [[ -n $PID ]] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  [[ -n $PG ]] && bash "$ROOT/tests/bench/pg.sh" stop "$PG"
  rm -rf "$WORK"
}
trap cleanup EXIT

rand() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
export CHATSDK_AUTH_SERVER__LISTEN=127.0.0.1:$PORT CHATSDK_AUTH_LOG__FORMAT=json CHATSDK_AUTH_LOG__LEVEL=info
export CHATSDK_AUTH_SERVER__WORKER_THREADS=1 CHATSDK_AUTH_STORAGE__DATA_DIR=$WORK/data
export CHATSDK_AUTH_SECRETS__REST_KEY=$(rand) CHATSDK_AUTH_SECRETS__CENTRIFUGO_KEY=$(rand)
export CHATSDK_AUTH_SECRETS__PROXY_SECRET=$(rand)
KEY=chatsdk_$(rand)
export CHATSDK_AUTH_SECRETS__INITIAL_API_KEY=$KEY CHATSDK_AUTH_LIMITS__MINT_PER_USER_PER_MINUTE=100000
if [[ ${BACKEND:-sqlite} == postgres ]]; then
  PG=$WORK/pg
  CHATSDK_AUTH_STORAGE__POSTGRES_URL=$(bash tests/bench/pg.sh fresh "$PG")
  export CHATSDK_AUTH_STORAGE__BACKEND=postgres CHATSDK_AUTH_STORAGE__POSTGRES_URL
fi
mkdir -p "$WORK/data"
(cd "$WORK" && "$SEEDER" --users 10000 --tokens 1000 --custom "$CUSTOM" --out "$WORK") 2>/dev/null
CG=$OUT/callgrind.$EP.out
(cd "$WORK" && exec valgrind --tool=callgrind ${CACHE_SIM:+--cache-sim=yes} --instr-atstart=no --callgrind-out-file="$CG" \
  "$BIN" serve) 2>"$OUT/server.$EP.log" &
PID=$!
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done

case $EP in
tokens) lua="reqs = {}
function init(a) for k = 1, 10000 do reqs[k] = wrk.format('POST', '/tokens', {['Content-Type'] = 'application/json', ['X-API-Key'] = '$KEY'}, '{\"userId\":\"user-' .. k .. '\",\"name\":\"Alice\",\"image\":\"https://example.com/avatars/alice.png\",\"custom\":$CUSTOM}') end end" ;;
connect) lua="reqs = {}
function init(a) for t in io.lines('$WORK/wstokens.txt') do reqs[#reqs + 1] = wrk.format('POST', '/centrifugo/connect', {['Content-Type'] = 'application/json', ['X-Chatsdk-Proxy-Secret'] = '$CHATSDK_AUTH_SECRETS__PROXY_SECRET'}, '{\"client\":\"c-1\",\"transport\":\"websocket\",\"protocol\":\"json\",\"encoding\":\"json\",\"data\":{\"token\":\"' .. t .. '\"}}') end end" ;;
refresh) lua="reqs = {}
function init(a) for k = 1, 1000 do reqs[k] = wrk.format('POST', '/centrifugo/refresh', {['Content-Type'] = 'application/json', ['X-Chatsdk-Proxy-Secret'] = '$CHATSDK_AUTH_SECRETS__PROXY_SECRET'}, '{\"client\":\"c-1\",\"transport\":\"websocket\",\"protocol\":\"json\",\"encoding\":\"json\",\"user\":\"user-' .. k .. '\",\"meta\":{\"iat\":1}}') end end" ;;
verify) lua="reqs = {}
function init(a) for t in io.lines('$WORK/resttokens.txt') do reqs[#reqs + 1] = wrk.format('GET', '/verify', {['Authorization'] = 'Bearer ' .. t}) end end" ;;
*) echo "unknown endpoint $EP" >&2; exit 2 ;;
esac
printf '%s\nfunction request() return reqs[math.random(#reqs)] end\n' "$lua" >"$WORK/load.lua"
wrk -t1 -c"$CONNECTIONS" -d3s -s "$WORK/load.lua" "http://127.0.0.1:$PORT" >/dev/null # warm-up, not collected
count() { curl -sf "http://127.0.0.1:$PORT/metrics" | awk '/^chatsdk_auth_http_request_duration_seconds_count/ { s += $2 } END { printf "%d\n", s }'; }
before=$(count)
callgrind_control -i on "$PID" >/dev/null
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/load.lua" "http://127.0.0.1:$PORT" | grep -E 'requests in|Non-2xx' || true
callgrind_control -i off "$PID" >/dev/null
after=$(count)
kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=""
n=$((after - before - 1)) # the /metrics call that read `after` counted itself
total=$(callgrind_annotate "$CG" 2>/dev/null | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
echo "$EP: $n requests, $total instructions, $((total / n)) per request"
callgrind_annotate --inclusive=yes "$CG" 2>/dev/null | sed -n '/file:function/,$p' | head -"${TOP:-60}" |
  awk -v n="$n" 'NR > 2 && $1 ~ /^[0-9,]+$/ { v = $1; gsub(",", "", v); printf "%8d  %s\n", v / n, substr($0, index($0, $3)) }'

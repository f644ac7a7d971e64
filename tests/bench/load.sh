#!/usr/bin/env bash
# End-to-end load benchmark: bash tests/bench/load.sh
#
# Builds the dist binary (`--profile dist`, what operators deploy), starts it on a tmpfs data directory (the server pinned to CPU 0,
# wrk to CPU 1, per-request logging on at info), then loads POST /tokens (userId drawn from
# 10,000 ids: inserts and updates), POST /centrifugo/connect (1,000 wsTokens minted by the
# server), POST /centrifugo/refresh and GET /verify (the 1,000 REST tokens minted with them), and
# prints req/s, p50/p99 and the server's peak RSS. ENDPOINTS="connect verify" picks a subset.
# Knobs: DURATION=10 CONNECTIONS=32 PORT=18181 DB_DIR=/dev/shm (a disk path includes fsyncs).
# Only 127.0.0.1; every run is bounded by DURATION.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
PORT=${PORT:-18181}
DB_DIR=${DB_DIR:-/dev/shm}

command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
cargo build --profile dist --locked -q
BIN=$PWD/target/dist/chatsdk-auth
WORK=$(mktemp -d "$DB_DIR/chatsdk-load.XXXXXX")
SCRIPTS=$(mktemp -d)
PID=""
cleanup() { [[ -n $PID ]] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$WORK" "$SCRIPTS"; }
trap cleanup EXIT

rand() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
export CHATSDK_AUTH_SERVER__LISTEN=127.0.0.1:$PORT CHATSDK_AUTH_LOG__FORMAT=json CHATSDK_AUTH_LOG__LEVEL=info
export CHATSDK_AUTH_SECRETS__REST_KEY=$(rand) CHATSDK_AUTH_SECRETS__CENTRIFUGO_KEY=$(rand)
export CHATSDK_AUTH_SECRETS__PROXY_SECRET=$(rand)
KEY=chatsdk_$(rand)
export CHATSDK_AUTH_SECRETS__INITIAL_API_KEY=$KEY
# Throughput, not the per-user mint limit: the load re-mints each user many times a minute.
export CHATSDK_AUTH_LIMITS__MINT_PER_USER_PER_MINUTE=0
(cd "$WORK" && exec taskset -c 0 "$BIN" serve) 2>"$WORK/server.log" &
PID=$!
for _ in $(seq 200); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.05; done
curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null || { tail "$WORK/server.log"; exit 1; }

# Requests are pre-formatted; request() only picks one.
cat >"$SCRIPTS/tokens.lua" <<LUA
local reqs = {}
function init(args)
  math.randomseed(os.time())
  for i = 1, 10000 do
    reqs[i] = wrk.format("POST", "/tokens", {["Content-Type"] = "application/json", ["X-API-Key"] = "$KEY"},
      string.format('{"userId":"user-%d","name":"Alice","image":"https://example.com/avatars/alice.png","custom":{"department":"Engineering"}}', i))
  end
end
function request() return reqs[math.random(#reqs)] end
LUA
for i in $(seq 1000); do
  curl -s -X POST "http://127.0.0.1:$PORT/tokens" -H "X-API-Key: $KEY" -H 'Content-Type: application/json' \
    -d "{\"userId\":\"user-$((i * 10))\",\"name\":\"Alice\"}"
  echo # the response has no final newline
done >"$SCRIPTS/minted.jsonl"
sed -n 's/.*"wsToken":"\([^"]*\)".*/\1/p' "$SCRIPTS/minted.jsonl" >"$SCRIPTS/wstokens.txt"
sed -n 's/.*"token":"\([^"]*\)".*/\1/p' "$SCRIPTS/minted.jsonl" >"$SCRIPTS/resttokens.txt"
[[ $(wc -l <"$SCRIPTS/wstokens.txt") -eq 1000 ]] || { echo "could not mint 1000 wsTokens" >&2; exit 1; }
[[ $(wc -l <"$SCRIPTS/resttokens.txt") -eq 1000 ]] || { echo "could not mint 1000 REST tokens" >&2; exit 1; }
cat >"$SCRIPTS/verify.lua" <<LUA
local reqs = {}
function init(args)
  math.randomseed(os.time())
  local n = 0
  for tok in io.lines("$SCRIPTS/resttokens.txt") do
    n = n + 1
    reqs[n] = wrk.format("GET", "/verify", {["Authorization"] = "Bearer " .. tok, ["X-Original-URI"] = "/api/messages"})
  end
end
function request() return reqs[math.random(#reqs)] end
LUA
for mode in connect refresh; do
  cat >"$SCRIPTS/$mode.lua" <<LUA
local reqs = {}
function init(args)
  math.randomseed(os.time())
  local n = 0
  for tok in io.lines("$SCRIPTS/wstokens.txt") do
    n = n + 1
    local body
    if "$mode" == "connect" then
      body = '{"client":"c-' .. n .. '","transport":"websocket","protocol":"json","encoding":"json","data":{"token":"' .. tok .. '"}}'
    else
      body = '{"client":"c-' .. n .. '","transport":"websocket","protocol":"json","encoding":"json","user":"user-' .. (n * 10) .. '","meta":{"iat":1}}'
    end
    reqs[n] = wrk.format("POST", "/centrifugo/$mode",
      {["Content-Type"] = "application/json", ["X-Chatsdk-Proxy-Secret"] = "$CHATSDK_AUTH_SECRETS__PROXY_SECRET"}, body)
  end
end
function request() return reqs[math.random(#reqs)] end
LUA
done

printf '%-9s %10s %9s %9s %8s\n' endpoint req/s p50_ms p99_ms non2xx
for ep in ${ENDPOINTS:-tokens connect refresh verify}; do
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s -s "$SCRIPTS/$ep.lua" "http://127.0.0.1:$PORT" >/dev/null
  out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$SCRIPTS/$ep.lua" "http://127.0.0.1:$PORT")
  rps=$(awk '/^Requests\/sec/ { print $2 }' <<<"$out")
  ms() { awk -v p="$1" '$1 == p { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 } printf "%.2f", v }' <<<"$out"; }
  bad=$(awk '/Non-2xx/ { print $NF }' <<<"$out")
  printf '%-9s %10s %9s %9s %8s\n' "$ep" "$rps" "$(ms 50%)" "$(ms 99%)" "${bad:-0}"
done
echo "peak RSS: $(awk '/VmHWM/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$PID/status"), now $(awk '/VmRSS/ { printf "%.1f MiB", $2 / 1024 }' "/proc/$PID/status")"

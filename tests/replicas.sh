#!/usr/bin/env bash
# The README's runbook "three replicas from zero", as written, on this machine: one PostgreSQL
# served over TLS (tests/bench/pg.sh with PG_TLS=1, sslmode=verify-full), three processes of
# the built binary with the same secrets and config, then what the runbook promises:
# every replica ready and minting, a rotation through one replica's admin API signing on the
# others, wrong API keys spread over the three limited at one replica's budget, and
# a replica with another key-encryption secret refusing to start.
#
#   cargo build && bash tests/replicas.sh            (BIN=path/to/chatsdk-auth for another build)
#
# Servers listen on 127.0.0.1 only; everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BIN=${BIN:-$ROOT/target/debug/chatsdk-auth}
[[ -x $BIN ]] || { echo "no binary at $BIN: run cargo build first" >&2; exit 2; }
WORK=$(mktemp -d /tmp/chatsdk-replicas.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  bash "$ROOT/tests/bench/pg.sh" stop "$WORK/pg" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
rand() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# 1. Database, over TLS.
PG_TLS=1 PG_CPU=${PG_CPU:-1} bash tests/bench/pg.sh start "$WORK/pg" "${PG_PORT:-15433}" >/dev/null
URL=$(PG_TLS=1 bash tests/bench/pg.sh url "$WORK/pg")
[[ $URL == *sslmode=verify-full* ]] || fail "the URL does not verify the server: $URL"

# 2. Secrets, the same on every replica.
export CHATSDK_AUTH_STORAGE__BACKEND=postgres CHATSDK_AUTH_STORAGE__POSTGRES_URL=$URL
export CHATSDK_AUTH_SECRETS__PROXY_SECRET=$(rand) CHATSDK_AUTH_SECRETS__CENTRIFUGO_API_KEY=$(rand)
export CHATSDK_AUTH_SECRETS__ADMIN_TOKEN=$(rand) CHATSDK_AUTH_SECRETS__METRICS_TOKEN=$(rand)
export CHATSDK_AUTH_SECRETS__SUBSCRIPTION_KEY=$(rand) CHATSDK_AUTH_SECRETS__KEY_ENCRYPTION_KEY=$(rand)
export CHATSDK_AUTH_LIMITS__FAILED_AUTH_PER_IP_PER_MINUTE=6 CHATSDK_AUTH_LOG__FORMAT=json
KEY=chatsdk_$(rand)

# 3 and 4. Three replicas, each with its own data directory (no shared files).
start() { # name port [extra env...]
  local name=$1 port=$2
  shift 2
  mkdir -p "$WORK/$name"
  (cd "$WORK/$name" && exec env CHATSDK_AUTH_SERVER__LISTEN=127.0.0.1:$port "$@" "$BIN" serve) \
    2>"$WORK/$name.log" &
  PIDS+=($!)
}
wait_ready() { # port
  for _ in $(seq 300); do
    curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0
    sleep 0.1
  done
  return 1
}
P=(18301 18302 18303)
start r1 "${P[0]}" CHATSDK_AUTH_SECRETS__INITIAL_API_KEY="$KEY"
wait_ready "${P[0]}" || fail "replica 1 not ready: $(tail -3 "$WORK/r1.log")"
start r2 "${P[1]}"
start r3 "${P[2]}"
for p in "${P[1]}" "${P[2]}"; do wait_ready "$p" || fail "replica on $p not ready"; done
echo "ok: three replicas ready on one PostgreSQL over TLS (sslmode=verify-full)"
ssl=$(PG_TLS=1 bash tests/bench/pg.sh psql "$WORK/pg" -Atc \
  "SELECT bool_and(s.ssl), count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'chatsdk-auth'")
[[ $ssl == t\|* ]] || fail "the replicas' connections are not all encrypted: $ssl"
echo "ok: every replica connection is encrypted (pg_stat_ssl: ${ssl#*|} connections)"

mint() { # port user -> kid of the REST token
  curl -sf -X POST "http://127.0.0.1:$1/tokens" -H "X-API-Key: $KEY" \
    -H 'Content-Type: application/json' -d "{\"userId\":\"$2\"}" |
    python3 -c 'import sys, json, base64
t = json.load(sys.stdin)["token"].split(".")[0]
print(json.loads(base64.urlsafe_b64decode(t + "=" * (-len(t) % 4)))["kid"])'
}
OLD=$(mint "${P[0]}" alice)
for p in "${P[@]}"; do [[ $(mint "$p" "user-$p") == "$OLD" ]] || fail "replica $p signs with another key"; done
echo "ok: every replica mints, all with kid $OLD"

# A rotation through replica 1's admin API signs on 2 and 3 at their next look at the ring
# (that the look comes one poll later is src/server.rs's paused-time test; the bound here only
# stops a broken run from hanging).
NEW=$(curl -sf -X POST "http://127.0.0.1:${P[0]}/admin/keys/rest/rotate" \
  -H "Authorization: Bearer $CHATSDK_AUTH_SECRETS__ADMIN_TOKEN" |
  python3 -c 'import sys, json; print(json.load(sys.stdin)["new_kid"])')
start_ms=$(date +%s%3N)
for p in "${P[1]}" "${P[2]}"; do
  until [[ $(mint "$p" "after-$p") == "$NEW" ]]; do
    (($(date +%s%3N) - start_ms < 60000)) || fail "replica $p does not sign with $NEW after 60 s"
    sleep 0.05
  done
done
echo "ok: rotated on replica 1 to $NEW; replicas 2 and 3 sign with it after $(($(date +%s%3N) - start_ms)) ms"

# Wrong keys round-robin: the budget of one replica (6), not three (18).
checked=0
for i in $(seq 0 29); do
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:${P[$((i % 3))]}/tokens" \
    -H 'X-API-Key: chatsdk_wrongwrongwrongwrongwrongwrongwrongwrong1' \
    -H 'Content-Type: application/json' -d '{"userId":"x"}')
  [[ $code == 401 ]] && checked=$((checked + 1))
done
((checked >= 6 && checked <= 8)) || fail "$checked wrong keys were checked (budget 6)"
echo "ok: 30 wrong keys over three replicas: $checked checked, the rest 429 (budget 6)"

# A replica with another key-encryption secret refuses to start; the others keep serving.
mkdir -p "$WORK/r4"
if (cd "$WORK/r4" && CHATSDK_AUTH_SECRETS__KEY_ENCRYPTION_KEY=$(rand) \
  CHATSDK_AUTH_SERVER__LISTEN=127.0.0.1:18304 timeout 20 "$BIN" serve) 2>"$WORK/r4.log"; then
  fail "a replica with another key-encryption secret started"
fi
grep -q "cannot decrypt the signing keys" "$WORK/r4.log" || fail "no sentence: $(tail -2 "$WORK/r4.log")"
echo "ok: a replica with another key-encryption secret refuses: $(grep -o 'cannot decrypt[^"]*' "$WORK/r4.log" | head -1 | cut -c1-100)..."
# (This address used up its failed-auth budget above, so ask the admin API, not /tokens.)
for p in "${P[@]}"; do
  curl -sf "http://127.0.0.1:$p/readyz" >/dev/null || fail "replica $p is not ready any more"
  curl -sf "http://127.0.0.1:$p/admin/keys" -H "Authorization: Bearer $CHATSDK_AUTH_SECRETS__ADMIN_TOKEN" |
    grep -q "$NEW" || fail "replica $p does not list $NEW"
done
echo "ok: the others keep serving (ready, and listing $NEW)"
echo "runbook: all checks passed"

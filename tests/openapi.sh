#!/usr/bin/env bash
# The API contract against the real server (tests/run.sh calls it after `cargo test`):
# validates src/openapi.json with openapi-spec-validator, starts target/debug/chatsdk-auth (or BIN) on a
# temp data dir and runs schemathesis against it for every operation (tests/schemathesis.toml:
# fixed seed, bounded examples, the API key, proxy secret, metrics and admin tokens supplied).
# Both tools come from PyPI, pinned, into the venv tests/venv.sh keeps under target/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/venv.sh
VENV=target/venv

echo "[openapi] openapi-spec-validator src/openapi.json"
"$VENV/bin/openapi-spec-validator" src/openapi.json

# tests/run.sh passes BIN: the binary its `cargo test` built (the one tests/replicas.sh runs).
# A `cargo build` here would build a second set of dependencies: without the dev-dependencies'
# features (tokio's test-util, for one), Cargo's resolver compiles them again.
if [[ -z ${BIN:-} ]]; then
  cargo build --locked --quiet --bin chatsdk-auth
  BIN=$PWD/target/debug/chatsdk-auth
fi
[[ -x $BIN ]] || { echo "[openapi] no binary at $BIN" >&2; exit 1; }

WORK=$(mktemp -d)
SERVER=""
cleanup() {
  if [[ -n $SERVER ]]; then kill "$SERVER" 2>/dev/null && wait "$SERVER" || true; fi
  [[ -n ${KEEP_WORK:-} ]] && cp "$WORK/server.log" "$KEEP_WORK"; rm -rf "$WORK"
}
trap cleanup EXIT

random() { python3 -c 'import secrets; print(secrets.token_urlsafe(32))'; }
export CHATSDK_AUTH_SECRETS__INITIAL_API_KEY="chatsdk_$(random)"
export CHATSDK_AUTH_SECRETS__PROXY_SECRET="$(random)"
export CHATSDK_AUTH_SECRETS__METRICS_TOKEN="$(random)"
export CHATSDK_AUTH_SECRETS__ADMIN_TOKEN="$(random)"

# From the temp dir, so the repository's config/chatsdk-auth.toml is not read. The rate limits
# are off so that every generated case reaches its handler (429 is documented, and tests/api/limits.rs
# covers it). Channels and a
# subscription expiry are set so connect and subscribe answers carry their optional fields; a
# declared segment field (role, which user-123 has) lets the bulk actions reach their answers.
(
  cd "$WORK"
  CHATSDK_AUTH_SERVER__LISTEN=127.0.0.1:0 \
  CHATSDK_AUTH_STORAGE__DATA_DIR="$WORK/data" \
  CHATSDK_AUTH_METRICS__REQUIRE_TOKEN=true \
  CHATSDK_AUTH_LIMITS__MINT_PER_USER_PER_MINUTE=0 \
  CHATSDK_AUTH_LIMITS__ADMIN_PER_IP_PER_MINUTE=0 \
  CHATSDK_AUTH_LIMITS__FAILED_AUTH_PER_IP_PER_MINUTE=0 \
  CHATSDK_AUTH_CENTRIFUGO__USER_CHANNELS='["personal:#{userId}"]' \
  CHATSDK_AUTH_CENTRIFUGO__SUBSCRIPTION_REFRESH_INTERVAL_SECONDS=600 \
  CHATSDK_AUTH_SEGMENTS__FIELDS='["role"]' \
  CHATSDK_AUTH_LOG__FORMAT=json \
  CHATSDK_AUTH_LOG__LEVEL=info \
  exec "$BIN" serve 2>"$WORK/server.log"
) &
SERVER=$!

fail() {
  echo "[openapi] $*" >&2
  tail -n 20 "$WORK/server.log" >&2 || true
  exit 1
}

# The address from the "listening" line, then /readyz.
ADDR=""
for _ in $(seq 300); do
  kill -0 "$SERVER" 2>/dev/null || fail "the server exited"
  ADDR=$(sed -n 's/.*"message":"listening".*"addr":"\([^"]*\)".*/\1/p' "$WORK/server.log" | head -n1)
  [[ -n $ADDR ]] && curl -sf "http://$ADDR/readyz" >/dev/null && break
  ADDR=""
  sleep 0.1
done
[[ -n $ADDR ]] || fail "the server did not become ready in 30 s"
URL="http://$ADDR"

# A user the documented examples name (user-123), so the examples reach the accepting answers
# of refresh, subscribe and sub_refresh; its wsToken drives the accepting connect answers.
MINTED=$(curl -sf -X POST "$URL/tokens" -H "X-API-Key: $CHATSDK_AUTH_SECRETS__INITIAL_API_KEY" \
  -H 'Content-Type: application/json' \
  -d '{"userId":"user-123","name":"Alice Johnson","image":"https://cdn.example/a.png","custom":{"role":"admin"}}')
WS_TOKEN=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["wsToken"])' <<<"$MINTED")
# Its REST token is the bearer the /verify operations get (tests/schemathesis.toml), so they
# reach their 200 answer as well as their refusals.
CHATSDK_AUTH_TEST_REST_TOKEN=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])' <<<"$MINTED")
export CHATSDK_AUTH_TEST_REST_TOKEN

# The committed file, not the served URL: schemathesis leaves out the operation that serves the
# document it loaded, and tests/api/openapi.rs already proves the two are the same bytes.
ST=("$VENV/bin/st" --config-file tests/schemathesis.toml run src/openapi.json --url "$URL" --no-color)
# The admin operations run last, on their own: they disable, revoke and delete users (user-123
# included), which would change the answers the other operations are checked for.
echo "[openapi] schemathesis: every operation but the admin API"
"${ST[@]}" --exclude-tag admin || fail "schemathesis found contract violations (above)"
echo "[openapi] schemathesis: connect with a valid wsToken forwarded as Authorization: Bearer"
"${ST[@]}" --include-operation-id centrifugoConnect -H "Authorization: Bearer $WS_TOKEN" ||
  fail "schemathesis found contract violations (above)"

# The runs reached both an accepting and a refusing answer of every callback, so the schemas of
# both were checked against real replies.
curl -sf "$URL/metrics" -H "Authorization: Bearer $CHATSDK_AUTH_SECRETS__METRICS_TOKEN" |
  python3 -c '
import re, sys
seen = {}
for m in re.finditer(r"proxy_decisions_total\{callback=\"(\w+)\",outcome=\"(\w+)\",reason=\"(\w+)\"\} (\S+)", sys.stdin.read()):
    if float(m[4]) > 0:
        seen.setdefault((m[1], m[2]), []).append(f"{m[3]}={float(m[4]):g}")
for key in sorted(seen):
    print("[openapi]  ", *key, " ".join(seen[key]))
missing = [f"{c} {o}" for c in ("connect", "refresh", "subscribe", "sub_refresh")
           for o in ("accepted", "rejected") if (c, o) not in seen]
sys.exit(f"[openapi] never reached: {missing}" if missing else 0)
' || fail "the runs did not reach every kind of proxy answer"

echo "[openapi] schemathesis: the admin API"
"${ST[@]}" --include-tag admin || fail "schemathesis found contract violations (above)"

if grep -q 'panicked' "$WORK/server.log"; then fail "the server panicked"; fi
kill "$SERVER"
wait "$SERVER" || fail "the server did not stop cleanly"
SERVER=""
echo "[openapi] ok"

#!/usr/bin/env bash
# The sidecar as the shared harness's server under test (its SUT_CMD). The harness exports
# BENCH_PORT, BENCH_RUN_DIR (a fresh directory per start), BENCH_JWT_SECRET and BENCH_WS_SECRET;
# this maps them onto the sidecar's settings and execs the dist binary, so the harness reads
# the server's own pid (peak RSS). The API key is SUT_API_KEY (the harness sends it; API keys
# here are `chatsdk_` and at least 32 characters). Settings, from SUT_ENV:
#   BACKEND=sqlite (default)   a fresh SQLite file in BENCH_RUN_DIR
#   BACKEND=postgres PG_DIR=D  a fresh database per start on the cluster `tests/bench/pg.sh
#                              start D` runs (pinned to the load generator's core)
#   WORLD_DB=FILE              SQLite only: start from a copy of FILE (a world seeded by
#                              tests/bench/world.sh) instead of an empty store
#   PROXY_SECRET=...           the connect-proxy secret (must match SUT_PROXY_HEADER)
#   MINT_PER_USER_PER_MINUTE   the per-user mint limit; default 100000, on but far above the
#                              harness's load (10,000 ids at roughly 100 requests a minute each)
# Logging stays at `info` with the access log on, as in production.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${SUT_BIN:-$ROOT/target/dist/chatsdk-auth}
: "${BENCH_PORT:?run me from the shared harness (SUT_CMD), which exports BENCH_*}"
export CHATSDK_AUTH_SERVER__LISTEN=127.0.0.1:$BENCH_PORT
export CHATSDK_AUTH_STORAGE__DATA_DIR=$BENCH_RUN_DIR
export CHATSDK_AUTH_LOG__LEVEL=info
export CHATSDK_AUTH_SECRETS__REST_KEY=$BENCH_JWT_SECRET
export CHATSDK_AUTH_SECRETS__CENTRIFUGO_KEY=$BENCH_WS_SECRET
export CHATSDK_AUTH_SECRETS__PROXY_SECRET=${PROXY_SECRET:-bench-proxy-secret-0123456789abcdef0123}
export CHATSDK_AUTH_SECRETS__INITIAL_API_KEY=${SUT_API_KEY:?set SUT_API_KEY=chatsdk_... (at least 32 random characters)}
export CHATSDK_AUTH_LIMITS__MINT_PER_USER_PER_MINUTE=${MINT_PER_USER_PER_MINUTE:-100000}
case ${BACKEND:-sqlite} in
sqlite)
  if [[ -n ${WORLD_DB:-} ]]; then cp "$WORLD_DB" "$BENCH_RUN_DIR/chatsdk-auth.db"; fi
  ;;
postgres)
  export CHATSDK_AUTH_STORAGE__BACKEND=postgres
  CHATSDK_AUTH_STORAGE__POSTGRES_URL=$(bash "$ROOT/tests/bench/pg.sh" newdb "${PG_DIR:?BACKEND=postgres needs PG_DIR}")
  export CHATSDK_AUTH_STORAGE__POSTGRES_URL
  ;;
*) echo "BACKEND must be sqlite or postgres" >&2; exit 2 ;;
esac
exec "$BIN" serve

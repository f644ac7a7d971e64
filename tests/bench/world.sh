#!/usr/bin/env bash
# The large world beside its small twin, on one data directory: bash tests/bench/world.sh
#
# Runs tests/bench/load.sh twice with the same settings otherwise:
#   small  10,000 users; /tokens draws from them; connect and /verify replay 1,000 tokens
#   large  LARGE users (default 1,000,000) seeded through the store code; /tokens draws from
#          all of them; connect and /verify are a storm of STORM (default 800,000) distinct
#          tokens, each used once, in order
# and prints each large figure as a ratio of its small twin, with peak RSS and the WAL size.
# Knobs: DB_DIR=/var/tmp (a real disk, so checkpoints pay their fsyncs) LARGE STORM BACKEND
# DURATION CONNECTIONS ENDPOINTS (default "tokens connect verify").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
export DB_DIR=${DB_DIR:-/var/tmp} ENDPOINTS=${ENDPOINTS:-tokens connect verify}
LARGE=${LARGE:-1000000}
STORM=${STORM:-800000}
out=$(mktemp)
trap 'rm -f "$out" "$out.small"' EXIT
echo "== small world"
SEED=10000 TOKENS=1000 ORDER=random bash tests/bench/load.sh | tee "$out.small"
echo "== large world"
SEED=$LARGE TOKENS=$STORM ORDER=once bash tests/bench/load.sh | tee "$out"
echo "== large / small (req/s)"
awk 'NR == FNR { if ($2 ~ /^[0-9.]+$/) small[$1] = $2; next }
     $2 ~ /^[0-9.]+$/ && ($1 in small) { printf "%-9s %.2f\n", $1, $2 / small[$1] }' "$out.small" "$out"

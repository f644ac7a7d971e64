#!/usr/bin/env bash
# Segments at scale: bash tests/bench/segments.sh
#
# Seeds USERS (default 1,000,000) users through the store code (tests/bench/seed.rs
# --custom segments) with the declared fields organizationId (1,000 values, 1,000 users each),
# tenantId (10 values, 100,000 each), plan (3 values, a third each), role (4) and permissions
# (an array), starts the dist server (pinned to CPU 0) and, over the admin API with curl, RUNS
# times each (a different value each run, so no answer is the previous one's):
#   list  GET /admin/users?where=...&limit=100 (the first page)
#   count POST /admin/bulk/disable {"where": [...], "dry_run": true}
# for a selective segment (one organization), a broad one (one plan, a third of the world) and
# two conditions (a tenant and a plan; PostgreSQL after VACUUM ANALYZE), printing the median
# and the longest answer in ms, and the query plan of the store's statement (SQLite EXPLAIN
# QUERY PLAN, PostgreSQL EXPLAIN ANALYZE), which names the index read.
# On SQLite it then measures POST /tokens (wrk pinned to CPU 1, users outside tenant-0..4, no
# `custom` sent, so each is a read) for WINDOW seconds alone, and again while a bulk disable
# of one tenant (USERS/10 users) runs over the admin API, starting 1 s in: req/s, p99 and the
# longest answer, ROUNDS times (tenant-0, tenant-1, ...; at most 5).
# Knobs: BACKENDS="sqlite postgres" DB_DIR=/var/tmp (SQLite's database: a real disk)
# PG_DIR=/dev/shm (the private cluster of tests/bench/pg.sh, on tmpfs as load.sh's) USERS
# RUNS=20 WINDOW=5 ROUNDS=3 CONNECTIONS=8 PORT=18183 PG_PORT=15432 BULK=1 BIN (another server build) SEEDER
# (another build of tests/bench/seed.rs).
# KEEP=1 keeps each backend's seeded world ($DB_DIR/chatsdk-segments-world-sqlite-$USERS,
# $PG_DIR/chatsdk-segments-world-postgres-$USERS) and reuses it on the next run instead of
# seeding again (the server's migrations upgrade it on start; the bulk rounds disable
# tenants, so run KEEP=1 with BULK=0, or remove the worlds after a bulk run).
# Only 127.0.0.1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
BACKENDS=${BACKENDS:-sqlite postgres}
DB_DIR=${DB_DIR:-/var/tmp}
PG_DIR=${PG_DIR:-/dev/shm}
USERS=${USERS:-1000000}
RUNS=${RUNS:-20}
WINDOW=${WINDOW:-5}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-8}
PORT=${PORT:-18183}
PG_PORT=${PG_PORT:-15432}
BULK=${BULK:-1}
KEEP=${KEEP:-0}
command -v wrk >/dev/null || { echo "wrk not found: apt-get install wrk" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "sqlite3 not found: apt-get install sqlite3" >&2; exit 1; }
[[ -n ${BIN:-} ]] || cargo build --profile dist --locked -q
BIN=${BIN:-$ROOT/target/dist/chatsdk-auth}
[[ -n ${SEEDER:-} ]] || SEEDER=$(cargo bench --profile dist --locked -q --bench seed --no-run --message-format=json |
  grep '"name":"seed"' | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
[[ -x $SEEDER ]] || { echo "could not build the seeder (tests/bench/seed.rs)" >&2; exit 1; }
PID="" PG="" WORK=""
cleanup() {
  [[ -n $PID ]] && kill -TERM "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  [[ -n $PG ]] && bash "$ROOT/tests/bench/pg.sh" stop "$PG" && { ((KEEP)) || rm -rf "$PG"; }
  [[ -n $WORK ]] && { ((KEEP)) || rm -rf "$WORK"; }
  return 0
}
trap cleanup EXIT

rand() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
URL=http://127.0.0.1:$PORT
export CHATSDK_AUTH_SERVER__LISTEN=127.0.0.1:$PORT CHATSDK_AUTH_LOG__FORMAT=json CHATSDK_AUTH_LOG__LEVEL=info
export CHATSDK_AUTH_SECRETS__REST_KEY=$(rand) CHATSDK_AUTH_SECRETS__CENTRIFUGO_KEY=$(rand)
export CHATSDK_AUTH_SECRETS__PROXY_SECRET=$(rand) CHATSDK_AUTH_SECRETS__ADMIN_TOKEN=$(rand)
KEY=chatsdk_$(rand)
export CHATSDK_AUTH_SECRETS__INITIAL_API_KEY=$KEY CHATSDK_AUTH_LIMITS__MINT_PER_USER_PER_MINUTE=100000
export CHATSDK_AUTH_SEGMENTS__FIELDS='["organizationId", "tenantId", "plan", "role", "permissions"]'
# A bulk action over the admin API answers when it is done (it runs to the end either way).
export CHATSDK_AUTH_SERVER__REQUEST_TIMEOUT_SECONDS=600
ADMIN="Authorization: Bearer $CHATSDK_AUTH_SECRETS__ADMIN_TOKEN"

# One admin call; prints its time in ms (curl's, connection included).
call() { curl -sf -o "$WORK/answer" -w '%{time_total}' -H "$ADMIN" "$@" | awk '{ printf "%.2f\n", $1 * 1000 }'; }
list() { call "$URL/admin/users?limit=100$(printf '&where=%s' "${@//=/%3D}")"; }
count() {
  local w
  w=$(printf '"%s",' "$@")
  call -X POST -H 'Content-Type: application/json' -d "{\"where\": [${w%,}], \"dry_run\": true}" "$URL/admin/bulk/disable"
}
# Median and max of the ms on stdin.
stats() { sort -n | awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%9.2f %9.2f", m, v[NR] }'; }
plans=("free" "pro" "team")
measure() {
  local shape=$1 kind=$2 r
  for ((r = 1; r <= RUNS; r++)); do
    case $shape in
    selective) set -- "organizationId=org-$((r * 37 % 1000))" ;;
    broad) set -- "plan=${plans[r % 3]}" ;;
    two) set -- "tenantId=tenant-$((r % 10))" "plan=${plans[r % 3]}" ;;
    esac
    "$kind" "$@"
  done | stats
  if [[ $kind == count ]]; then
    printf '  (%s users)' "$(sed -n 's/.*"count":\([0-9]*\).*/\1/p' "$WORK/answer")"
  else
    printf '  (%s on the page)' "$(grep -o '"id":' "$WORK/answer" | wc -l)"
  fi
  echo
}

# The statements of src/store/*segments.rs, for the plans, with ?1/$1 the key of plan=pro and
# ?2/$2 that of tenantId=tenant-3 (the store looks the keys up first, and puts the condition
# with fewer users first: the tenant's 100,000 before the plan's 333,333).
cols='u.id, u.name, u.image, u.custom, u.disabled, u.tokens_valid_after, u.created_at, u.updated_at'
sqlite_list="SELECT $cols FROM user_segments s0 JOIN users u ON u.id = s0.user_id WHERE s0.key = ?1 ORDER BY s0.user_id LIMIT 100"
sqlite_count='SELECT count(*) FROM user_segments s0 WHERE s0.key = ?1'
sqlite_two='SELECT count(*) FROM user_segments s0 WHERE s0.key = ?2 AND EXISTS (SELECT 1 FROM user_segments s1 WHERE s1.key = ?1 AND s1.user_id = s0.user_id)'
pg_list="SELECT $cols FROM chatsdk_auth_user_segments s0 JOIN chatsdk_auth_users u ON u.id = s0.user_id COLLATE \"default\" WHERE s0.key = \$1 ORDER BY s0.user_id LIMIT 100"
pg_count='SELECT count(*) FROM chatsdk_auth_user_segments s0 WHERE s0.key = $1'
pg_two='SELECT count(*) FROM chatsdk_auth_user_segments s0 WHERE s0.key = $2 AND EXISTS (SELECT 1 FROM chatsdk_auth_user_segments s1 WHERE s1.key = $1 AND s1.user_id = s0.user_id)'
key_of() { echo "SELECT key FROM $1 WHERE field = '$2' AND value = '\"$3\"'"; }
# The database's own CPU time per count (load from other jobs on the machine inflates the
# wall-clock figures, not these): SQLite's user + system time in sqlite3, median of 11; the
# PostgreSQL backend's from /proc, the mean of 20 after one (its clock ticks are 10 ms), with
# parallel workers off so that the backend does all the work.
sqlite_cpu() {
  local i
  for i in $(seq 11); do printf '.timer on\n%s;\n' "$1"; done | sqlite3 "$WORK/data/chatsdk-auth.db" |
    awk '/^Run Time/ { print ($6 + $8) * 1000 }' | stats | awk '{ print $1 }'
}
pg_cpu() {
  local i
  { echo 'SELECT pg_backend_pid() AS pid \gset'; echo '\setenv BPID :pid'
    echo 'SET max_parallel_workers_per_gather = 0;'; echo "$1;"
    echo "\\! awk '{ print \"T0\", \$14 + \$15 }' /proc/\$BPID/stat"
    for i in $(seq 20); do echo "$1;"; done
    echo "\\! awk '{ print \"T1\", \$14 + \$15 }' /proc/\$BPID/stat"; } |
    bash tests/bench/pg.sh psql "$PG" -d "$db" -qAt |
    awk -v hz="$(getconf CLK_TCK)" '/^T0/ { a = $2 } /^T1/ { b = $2 } END { printf "%.1f\n", (b - a) * 1000 / hz / 20 }'
}

wrk_tokens() {
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"$1s" --latency -s "$WORK/tokens.lua" "$URL" |
    awk '/^ *Latency +[0-9]/ { max = $4 } /^ *99%/ { p99 = $2 } /^Requests\/sec/ { rps = $2 } /Non-2xx/ { bad = $NF }
         END { printf "%10s %9s %9s %8s\n", rps, p99, max, bad ? bad : 0 }'
}

for backend in $BACKENDS; do
  if ((KEEP)); then
    WORK=$DB_DIR/chatsdk-segments-world-sqlite-$USERS
    [[ $backend == postgres ]] && PG=$PG_DIR/chatsdk-segments-world-postgres-$USERS WORK=$PG/work
    mkdir -p "$WORK"
  else
    WORK=$(mktemp -d "$DB_DIR/chatsdk-segments.XXXXXX")
    [[ $backend == postgres ]] && PG=$(mktemp -d "$PG_DIR/chatsdk-segments-pg.XXXXXX")
  fi
  export CHATSDK_AUTH_STORAGE__DATA_DIR=$WORK/data CHATSDK_AUTH_STORAGE__BACKEND=$backend
  unset CHATSDK_AUTH_STORAGE__POSTGRES_URL
  if [[ $backend == postgres ]]; then
    if [[ -f $WORK/url ]]; then
      bash tests/bench/pg.sh start "$PG" "$PG_PORT" >/dev/null
      CHATSDK_AUTH_STORAGE__POSTGRES_URL=$(cat "$WORK/url")
    else
      CHATSDK_AUTH_STORAGE__POSTGRES_URL=$(bash tests/bench/pg.sh fresh "$PG" "$PG_PORT" | tee "$WORK/url.new")
    fi
    export CHATSDK_AUTH_STORAGE__POSTGRES_URL
  fi
  mkdir -p "$WORK/data"
  echo "== $backend: $USERS users, $RUNS runs each ($([[ $backend == sqlite ]] && echo "$DB_DIR" || echo "$PG_DIR"))"
  if [[ -f $WORK/seeded ]]; then
    echo "(the world seeded by an earlier run, kept with KEEP=1)"
  else
    # The seeder keeps 64 upserts in flight: on a loaded machine some wait past the 1 s default.
    (cd "$WORK" && CHATSDK_AUTH_STORAGE__POSTGRES_TIMEOUT_MS=30000 "$SEEDER" --users "$USERS" --custom segments)
    if ((KEEP)); then
      [[ $backend == postgres ]] && mv "$WORK/url.new" "$WORK/url"
      touch "$WORK/seeded"
    fi
  fi
  (cd "$WORK" && exec taskset -c 0 "$BIN" serve) 2>"$WORK/server.log" &
  PID=$!
  # A kept world from an older schema is migrated first (a few minutes for 1,000,000 users).
  for _ in $(seq 3000); do curl -sf "$URL/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf "$URL/readyz" >/dev/null || { tail "$WORK/server.log"; exit 1; }
  if [[ $backend == postgres ]]; then
    db=${CHATSDK_AUTH_STORAGE__POSTGRES_URL##*/} db=${db%%\?*}
    # As autovacuum leaves a table after a bulk load: statistics and the visibility map.
    bash tests/bench/pg.sh psql "$PG" -d "$db" -qAt -c 'VACUUM ANALYZE'
  fi
  printf '%-22s %9s %9s\n' query median_ms max_ms
  for shape in selective broad two; do
    for kind in list count; do
      printf '%-22s ' "$kind $shape"
      measure "$shape" "$kind"
    done
  done
  echo "-- query plans (page and count of plan=pro, count of tenantId=tenant-3 and plan=pro)"
  if [[ $backend == sqlite ]]; then
    sq() { sqlite3 "$WORK/data/chatsdk-auth.db" "$@"; }
    k=$(sq "$(key_of segment_keys plan pro)") t=$(sq "$(key_of segment_keys tenantId tenant-3)")
    for q in "$sqlite_list" "$sqlite_count" "$sqlite_two"; do
      sq ".parameter set ?1 $k" ".parameter set ?2 $t" "EXPLAIN QUERY PLAN $q"
    done
    echo "-- SQLite CPU ms per count (median of 11): plan=pro $(sqlite_cpu "${sqlite_count//\?1/$k}")," \
      "tenantId=tenant-3 and plan=pro $(sqlite_cpu "$(echo "$sqlite_two" | sed "s/?1/$k/; s/?2/$t/")")"
  else
    pq() { bash tests/bench/pg.sh psql "$PG" -d "$db" -qAt -c "$1"; }
    k=$(pq "$(key_of chatsdk_auth_segment_keys plan pro)") t=$(pq "$(key_of chatsdk_auth_segment_keys tenantId tenant-3)")
    for q in "$pg_list" "$pg_count" "$pg_two"; do
      q=${q//\$1/$k} q=${q//\$2/$t}
      # The store counts several conditions without parallel workers (a merge join).
      set=""
      [[ $q == *EXISTS* ]] && set="SET max_parallel_workers_per_gather = 0;"
      pq "$set EXPLAIN (ANALYZE, COSTS OFF) $q"
    done
    two=${pg_two//\$1/$k} two=${two//\$2/$t}
    echo "-- PostgreSQL backend CPU ms per count (mean of 20): plan=pro $(pg_cpu "${pg_count//\$1/$k}")," \
      "tenantId=tenant-3 and plan=pro $(pg_cpu "$two")"
  fi
  if [[ $backend == sqlite && $BULK == 1 ]]; then
    cat >"$WORK/tokens.lua" <<LUA
reqs, n = {}, 0
function init(args)
  math.randomseed(os.time())
  for k = 1, $USERS do
    if k % 10 >= 5 then
      n = n + 1
      reqs[n] = wrk.format("POST", "/tokens", {["Content-Type"] = "application/json", ["X-API-Key"] = "$KEY"},
        string.format('{"userId":"user-%d","name":"Alice","image":"https://example.com/avatars/alice.png"}', k))
    end
  end
end
function request() return reqs[math.random(n)] end
LUA
    echo "-- POST /tokens ($CONNECTIONS connections, ${WINDOW}s windows, users outside tenant-0..4)"
    printf '%-34s %10s %9s %9s %8s\n' run req/s p99 max non2xx
    taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d2s -s "$WORK/tokens.lua" "$URL" >/dev/null # warm-up
    for ((r = 0; r < ROUNDS && r < 5; r++)); do
      printf '%-34s ' "round $((r + 1)): alone"
      wrk_tokens "$WINDOW"
      count "tenantId=tenant-$r" >/dev/null
      n=$(sed -n 's/.*"count":\([0-9]*\).*/\1/p' "$WORK/answer")
      wrk_tokens "$WINDOW" >"$WORK/during" &
      w=$!
      sleep 1
      ms=$(call -X POST -H 'Content-Type: application/json' \
        -d "{\"where\": [\"tenantId=tenant-$r\"], \"expected_count\": $n}" "$URL/admin/bulk/disable")
      wait "$w"
      printf '%-34s %s\n' "round $((r + 1)): during the bulk disable" "$(cat "$WORK/during")"
      changed=$(sed -n 's/.*"changed":\([0-9]*\).*/\1/p' "$WORK/answer")
      echo "  bulk disable of tenant-$r: $changed of $n users changed in $(awk -v m="$ms" 'BEGIN { printf "%.2f s", m / 1000 }')"
      awk -v m="$ms" -v w="$WINDOW" 'BEGIN { if (m / 1000 > w - 1) print "  (the bulk outlasted the window: raise WINDOW)" }'
    done
  fi
  kill -TERM "$PID"; wait "$PID" 2>/dev/null || true; PID=""
  [[ -n $PG ]] && { bash tests/bench/pg.sh stop "$PG"; ((KEEP)) || rm -rf "$PG"; PG=""; }
  ((KEEP)) || rm -rf "$WORK"
  WORK=""
done

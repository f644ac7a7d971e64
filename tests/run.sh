#!/usr/bin/env bash
# The test command (README "Testing"; .ci/run calls exactly this). Installs what the suite
# needs when it is missing, then runs formatting, lints and every test.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# Each step is announced with the seconds since the start, so a slow step shows in the log.
step() { echo "[test] $SECONDS s: $*"; }

need=()
command -v prometheus >/dev/null && command -v promtool >/dev/null || need+=(prometheus)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || need+=(nginx)   # tests/api/nginx.rs
command -v caddy >/dev/null || need+=(caddy)                                 # tests/api/caddy.rs
# tests/api/stacks.rs: the token guide's Node, Python, Ruby and PHP backends with their clients.
command -v node >/dev/null || need+=(nodejs)
/usr/bin/python3 -c 'import httpx' 2>/dev/null || need+=(python3-httpx)
ruby -e 'require "httparty"' 2>/dev/null || need+=(ruby ruby-httparty)
php -r 'require "GuzzleHttp/autoload.php";' 2>/dev/null || need+=(php-cli php-guzzlehttp-guzzle)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)  # tests/openapi.sh
command -v curl >/dev/null || need+=(curl)
command -v openssl >/dev/null || need+=(openssl)   # tests/replicas.sh: the TLS PostgreSQL's certificates
command -v ip >/dev/null && command -v setpriv >/dev/null || need+=(iproute2 util-linux)  # tests/api/tls.rs: PostgreSQL in a network namespace
command -v chromium >/dev/null && command -v chromedriver >/dev/null || need+=(chromium chromium-driver)  # tests/api/console_browser.rs
# tests/deploy.sh: rootful podman with runc, the pod's pause process, the base image's maker.
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
[[ -x /usr/libexec/podman/catatonit || -x /usr/bin/catatonit ]] || need+=(catatonit)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
if ((${#need[@]})); then
  step "installing ${need[*]} (Debian packages)"
  SUDO=""; ((EUID == 0)) || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# A test whose component is missing fails instead of skipping (tests/api/need.rs). Not a
# CHATSDK_AUTH_* name: that prefix is the service's configuration, where it is an unknown key.
export CHATSDK_TEST_FULL_SUITE=1

step "cargo fmt --check"
cargo fmt --all -- --check

# Two steps run beside the others: the Python tools (mostly downloads) and the dist build for
# tests/deploy.sh, at the lowest CPU priority, so it takes the CPU the tests leave idle (they
# wait on servers and browsers much of the time) and the tests keep theirs. Each is awaited
# where its result is first needed; its log is shown if it failed.
mkdir -p target
background=()
trap 'for pid in "${background[@]}"; do kill "$pid" 2>/dev/null || true; done' EXIT
bash tests/venv.sh >target/venv.log 2>&1 &
venv_pid=$!
nice -n 19 cargo build --locked --quiet --profile dist >target/dist-build.log 2>&1 &
dist_pid=$!
background=("$venv_pid" "$dist_pid")
await() { # PID LOG WHAT
  wait "$1" && return
  tail -n 40 "$2" >&2
  echo "[test] FAIL: $3 (log: $2)" >&2
  exit 1
}

step "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
step "promtool: alert rules and their unit tests"
(cd dashboards && promtool check rules alerts.yml && promtool test rules alerts.test.yml)
step "Python tools (schemathesis, PyJWT) into target/venv"
await "$venv_pid" target/venv.log "tests/venv.sh"
step "cargo test"
cargo test --locked --lib --bins --tests   # no doctests: the crate has none, and an empty run would close the log
step "the README's runbook: three replicas on one PostgreSQL over TLS"
bash tests/replicas.sh
step "API contract: openapi-spec-validator, then schemathesis against the built binary"
BIN=$PWD/target/debug/chatsdk-auth bash tests/openapi.sh
step "deploy: the image from the Containerfile, the pod through podman kube play, the manifests' schemas"
await "$dist_pid" target/dist-build.log "cargo build --profile dist"
bash tests/deploy.sh
step "all passed"

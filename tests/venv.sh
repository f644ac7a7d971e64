#!/usr/bin/env bash
# The Python tools the tests use, pinned, in a venv under target/ (reused while the pins are the
# same): openapi-spec-validator and schemathesis (tests/openapi.sh), and PyJWT with its
# `cryptography` backend, the independent JWKS verifier of tests/api/jwks.rs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PINS="openapi-spec-validator==0.9.0 schemathesis==4.32.5 pyjwt[crypto]==2.10.1"
VENV=target/venv
if [[ ! -x $VENV/bin/st || "$(cat "$VENV/pins" 2>/dev/null)" != "$PINS" ]]; then
  echo "[venv] installing $PINS into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  # shellcheck disable=SC2086 # one word per pin
  "$VENV/bin/pip" install -q --disable-pip-version-check $PINS
  echo "$PINS" >"$VENV/pins"
fi

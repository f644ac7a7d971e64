"""Verifies JWTs against a JWKS URL with PyJWT's PyJWKClient: an implementation independent of
the service's (Python, `cryptography`). Used by tests/api/keys.rs.

stdin: {"jwks_url": "...", "tokens": [{"token": "...", "alg": "ES256", "aud": "...", "iss": "..."}]}
stdout: one result per token: {"ok": true, "kid": "...", "sub": "..."} or {"ok": false, "error": "..."}
"""
import json
import sys

import jwt
from jwt import PyJWKClient

args = json.load(sys.stdin)
# No caching: every token asks the endpoint again, so a rotation is seen at once.
client = PyJWKClient(args["jwks_url"], cache_jwk_set=False, cache_keys=False)
out = []
for t in args["tokens"]:
    try:
        key = client.get_signing_key_from_jwt(t["token"])
        claims = jwt.decode(
            t["token"],
            key.key,
            algorithms=[t["alg"]],
            audience=t.get("aud"),
            issuer=t.get("iss"),
            options={"require": ["exp", "iat", "sub"]},
        )
        out.append({"ok": True, "kid": key.key_id, "sub": claims["sub"]})
    except Exception as e:  # noqa: BLE001 - the test wants every failure, named
        out.append({"ok": False, "error": f"{type(e).__name__}: {e}"})
json.dump(out, sys.stdout)

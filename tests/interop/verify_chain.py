"""Verify a trust chain's signatures with cryptojwt (an independent JOSE implementation).

Runs under the separate interop virtualenv; pytest never imports this file.  ofcli 0.7.2
builds chains but does not verify signatures (``TrustTree.verify_signatures`` is a TODO
that returns True), so this script checks, per OpenID Federation 1.0 §10.2, the chain
ofcli printed, leaf first:

* every statement has ``typ=entity-statement+jwt`` (§3) and ``alg=ES256`` (gematik);
* ``ES[j].iss == ES[j+1].sub``;
* the leaf configuration verifies with its own ``jwks`` and with the ``jwks`` of the
  superior's subordinate statement about it; each subordinate statement verifies with the
  ``jwks`` of the next entity configuration up; the trust anchor's configuration verifies
  with the keys pinned out of band.

stdin: ``{"chain": [jwt, ...], "anchor_jwks": {"keys": [...]}}``;
stdout: ``{"verified": N}``; exit status 1 with a message on the first failure.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from cryptojwt.jwk.jwk import key_from_jwk_dict
from cryptojwt.jws.jws import JWS, factory


def _keys(jwks: dict[str, Any]) -> list[Any]:
    return [key_from_jwk_dict(k) for k in jwks["keys"]]


def _verify(token: str, jwks: dict[str, Any], what: str) -> dict[str, Any]:
    parsed = factory(token)
    if parsed is None:
        raise SystemExit(f"{what}: not a JWS")
    headers = parsed.jwt.headers
    if headers.get("typ") != "entity-statement+jwt" or headers.get("alg") != "ES256":
        raise SystemExit(f"{what}: header {headers!r}")
    try:
        payload = JWS(alg="ES256").verify_compact(token, keys=_keys(jwks))
    except Exception as exc:  # cryptojwt raises several unrelated types
        raise SystemExit(f"{what}: signature does not verify: {exc!r}") from exc
    return dict(payload)


def main() -> None:
    req = json.load(sys.stdin)
    chain: list[str] = req["chain"]
    payloads = [factory(t).jwt.payload() for t in chain]
    for j in range(len(payloads) - 1):
        if payloads[j]["iss"] != payloads[j + 1]["sub"]:
            raise SystemExit(f"chain link {j}: iss does not match the next statement's sub")
    leaf, anchor = payloads[0], payloads[-1]
    if leaf["iss"] != leaf["sub"] or anchor["iss"] != anchor["sub"]:
        raise SystemExit("chain must start and end with an entity configuration")
    _verify(chain[0], leaf["jwks"], "leaf configuration (self-signed)")
    _verify(chain[0], payloads[1]["jwks"], "leaf configuration (keys from its superior)")
    for j in range(1, len(chain) - 1):
        _verify(chain[j], payloads[j + 1]["jwks"], f"subordinate statement {j}")
    _verify(chain[-1], req["anchor_jwks"], "trust anchor configuration (pinned keys)")
    json.dump({"verified": len(chain)}, sys.stdout)


if __name__ == "__main__":
    main()

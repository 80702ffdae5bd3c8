"""Run the stock ``ofcli`` command line with ONE adaptation for gematik's federation master.

Runs under the separate interop virtualenv (ofcli is not a dependency of healthid-broker);
pytest never imports this file.

ofcli 0.7.2 follows OpenID Federation 1.0 §8.1.1 as it stands since draft 39 (openid/
federation PR #63): its fetch request carries only ``sub``.  gematik's federation master —
and therefore our sandbox, which mirrors it (docs/ti-profile.md §3.2) — also wants
``iss=<master entity id>`` and answers HTTP 400 (gematik_code 6000) without it.  This
wrapper adds ``iss`` (the issuer's entity identifier exactly as named in
``authority_hints``) to the fetch request and changes nothing else: the CLI, the fetch
endpoint discovery, chain building, metadata policy and exp computation are ofcli's own.

Usage: python ofcli_gematik.py [--stock] OFCLI-ARGS...
``--stock`` runs ofcli without the adaptation (to show the deviation).
"""

from __future__ import annotations

import contextvars
import sys
from typing import Any

_ISSUER: contextvars.ContextVar[str | None] = contextvars.ContextVar("issuer", default=None)


def _install_iss_adaptation() -> None:
    from ofcli import trustchain, utils

    original_fetch = utils.fetch_entity_statement
    original_add = utils.URL.add_query_params

    async def fetch_entity_statement(entity_id: Any, issuer: Any, http_session: Any) -> str:
        token = _ISSUER.set(getattr(issuer, "_original", str(issuer)))
        try:
            return str(await original_fetch(entity_id, issuer, http_session))
        finally:
            _ISSUER.reset(token)

    def add_query_params(self: Any, params: dict[str, str]) -> Any:
        issuer = _ISSUER.get()
        if issuer is not None and "sub" in params and "iss" not in params:
            params = {"iss": issuer, **params}
        return original_add(self, params)

    utils.URL.add_query_params = add_query_params
    # ofcli.core looks utils.fetch_entity_statement up at call time; ofcli.trustchain
    # imported the name, so it is replaced in both places.
    utils.fetch_entity_statement = fetch_entity_statement
    trustchain.fetch_entity_statement = fetch_entity_statement


def main(argv: list[str]) -> None:
    if argv[:1] == ["--stock"]:
        argv = argv[1:]
    else:
        _install_iss_adaptation()
    from ofcli.cli import cli

    # ofcli's own entry point (safe_cli) logs errors and exits 0; call the click group
    # directly so that a failure gives a non-zero exit status.
    cli.main(args=argv, prog_name="ofcli", standalone_mode=True)


if __name__ == "__main__":
    main(sys.argv[1:])

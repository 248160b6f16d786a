"""`nim-pathway web`: the workbench (nim_pathway/web) on 127.0.0.1, served by uvicorn."""

from __future__ import annotations

from typing import Annotated

import typer

from nim_pathway.cli.io import service, settings


def web(port: Annotated[int | None, typer.Option(
        help="the port on 127.0.0.1 (default NIM_WEB_PORT, 4300)", min=1, max=65535)] = None,
        ) -> None:
    """Serve the workbench for people: sign in with a one-time code, My work, the board,
    case timelines and the coordinator's forms (docs/WORKBENCH.md). Put it behind an HTTPS
    proxy to reach it from other machines."""
    import uvicorn

    from nim_pathway.web import create_app

    chosen = port or settings().web_port
    settings().totp_key  # noqa: B018 - the workbench checks codes: no key, no start
    typer.echo(f"workbench: http://127.0.0.1:{chosen}/  (stop with Ctrl-C)")
    uvicorn.run(create_app(service()), host="127.0.0.1", port=chosen, log_level="warning",
                access_log=False, server_header=False)

"""The baseline deployment: a flow that does nothing (served next to the pathway's flows)."""

from __future__ import annotations

from prefect import flow


@flow(name="bench-noop", persist_result=False)
def noop() -> None:
    """A bare flow run: what Prefect costs before the flow does any work."""


SERVE = (
    "from prefect import serve\n"
    "from bench.noop_flow import noop\n"
    "from flows.pathway_flows import ALL_FLOWS\n"
    "serve(*[f.to_deployment(name=n) for n, f in ALL_FLOWS.items()],\n"
    "      noop.to_deployment(name='noop'))\n"
)

"""CLI tests act as real people: the demo team is enrolled (init, then an admin adds everyone,
as `nim-pathway init` and `practitioner add` do), and each member logs in once with their
current one-time code. `--as HANDLE` in a command line picks that person's session file, as
each person's own home folder would."""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

from nim_pathway.app import build_service
from nim_pathway.demo import DEMO_ADMIN, DEMO_TEAM, current_code, seed_team
from store.files import write_private


def log_in_team(env: dict[str, str], sessions: Path) -> None:
    """Seed the demo team in `env`'s store and write a live session file per member."""
    sessions.mkdir(parents=True, exist_ok=True)
    with mock.patch.dict(os.environ, env):
        svc = build_service()
        seed_team(svc)
        for handle in [DEMO_ADMIN.handle] + [h for h, *_ in DEMO_TEAM]:
            token = svc.identity.login(handle, current_code(svc, handle), 600)
            write_private(sessions / handle, token.token.encode())  # 0600, as login writes it


def as_person(env: dict[str, str], args: tuple[str, ...] | list[str],
              sessions: Path) -> dict[str, str]:
    """`env` with the session file of whoever `--as` names (none if nobody is named)."""
    args = list(args)
    handle = args[args.index("--as") + 1] if "--as" in args[:-1] else None
    return {**env, "NIM_SESSION_FILE": str(sessions / (handle or "-nobody-"))}

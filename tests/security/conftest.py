"""A whole site in the test's own folder: data folder, case store, key store, keys and audit
checkpoint, as `nim-pathway init` makes them, so an attack can read or edit every file."""

from __future__ import annotations

from pathlib import Path

import pytest

from nim_pathway.app import build_service
from nim_pathway.settings import Settings
from store.db import get_engine, migrate
from tests.conftest import _truncate


def site_env(data: Path, url: str, **extra: str) -> dict[str, str]:
    return {"NIM_DATA_DIR": str(data), "NIM_DATABASE_URL": url,
            "NIM_AUDIT_CHECKPOINT": str(data / "audit.checkpoint"), **extra}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def site(request, tmp_path, clock):
    """(service, data folder): the demo team on a fresh store of each backend."""
    from nim_pathway.demo import seed_team

    data = tmp_path / "data"
    if request.param == "sqlite":
        url = f"sqlite:///{data / 'nim.db'}"
        new = Settings.from_env(site_env(data, url))
        assert new.audit_key and new.secret_key  # a new site: its keys made first, as init does
        migrate(url)
    else:
        url = request.getfixturevalue("pg_url")
        _truncate(url)
    svc = build_service(url, clock, migrate=False, settings=Settings.from_env(site_env(data, url)))
    seed_team(svc)
    yield svc, data
    if request.param == "sqlite":
        get_engine(url).dispose()
    get_engine(svc.settings.keystore_url).dispose()

"""Where messages go: named targets, role channels and the admin target.

Configuration is data: a YAML file (`NIM_NOTIFY_CONFIG`) and environment variables. Secrets
(SMTP passwords, webhook tokens) live only here, never in the case store, logs or Prefect:
a practitioner's `contact` is either a named target with an address (`email:chen@nhs.net`)
or an Apprise URL without secrets (`json://127.0.0.1:8080/hook`).

    targets:                 # Apprise URL templates; {to} is filled from the contact
      email: "mailtos://nim:SECRET@smtp.example.org?from=nim@example.org&to={to}"
    channels:                # team channels (Teams, Slack) by name
      psychology: "msteams://TOKEN_A/TOKEN_B/TOKEN_C"
    roles:                   # role -> channels that receive the role's messages
      psychologist: [psychology]
    admin: ["mailtos://...to=ops@example.org"]   # dead-letter alerts
    ui_url: http://127.0.0.1:4200
    quiet_hours: {start: "20:00", end: "08:00"}  # SMS and push wait until the end
    max_attempts: 6
    backoff_seconds: 60      # doubled on each failed attempt
    concurrency: 8

The file holds secrets, so it must be readable by the service user only (`chmod 600`): one
readable by group or others is refused, as ssh refuses such a key. Errors about it name
locations and error types, never a value.

Environment: `NIM_TARGET_<NAME>=url` adds or overrides a target or channel,
`NIM_ADMIN_TARGETS=url,url` the admin targets, `NIM_UI_URL` the UI link base.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import time
from functools import lru_cache
from pathlib import Path
from urllib.parse import quote

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from models.errors import ConfigError, Invalid
from models.nesting import too_deeply_nested
from models.redaction import scrub_text
from store.files import read_bounded


class NotifyConfigError(Invalid):
    """The notification config cannot be used; the message names the file, never a secret."""


class QuietHours(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: time = time(20, 0)
    end: time = time(8, 0)

    def contains(self, t: time) -> bool:
        if self.start <= self.end:
            return self.start <= t < self.end
        return t >= self.start or t < self.end


class NotifyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    targets: dict[str, str] = {}
    channels: dict[str, str] = {}
    roles: dict[str, list[str]] = {}
    admin: list[str] = []
    ui_url: str = "http://127.0.0.1:4200"
    quiet_hours: QuietHours = QuietHours()
    max_attempts: int = Field(default=6, ge=1, le=50)
    backoff_seconds: int = Field(default=60, ge=1)
    concurrency: int = Field(default=8, ge=1, le=64)
    lease_seconds: int = Field(default=300, ge=10)
    digest_hour: int = Field(default=8, ge=0, le=23)  # UK hour from which digests are sent

    def resolve(self, recipient: str, contact: str | None) -> tuple[str, str]:
        """(target name for logs, Apprise URL) of one recipient; ValueError says what to set."""
        kind, _, name = recipient.partition(":")
        if kind == "channel":
            if name not in self.channels:
                raise ValueError(f"no channel {name!r} configured (channels: or NIM_TARGET_"
                                 f"{name.upper().replace('-', '_')})")
            return recipient, self.channels[name]
        if not contact:
            raise ValueError(f"practitioner {name} has no contact; set one with "
                             "`nim-pathway practitioner add … --contact email:address`")
        scheme, sep, address = contact.partition(":")
        if sep and not address.startswith("//"):  # a named target with an address
            if scheme not in self.targets:
                raise ValueError(f"contact of {name} uses target {scheme!r}, which is not "
                                 f"configured (targets: or NIM_TARGET_{scheme.upper()})")
            return f"{recipient} via {scheme}", self.targets[scheme].replace(
                "{to}", quote(address, safe="@"))
        return f"{recipient} via {scheme}", contact


def load_config(path: str | None = None, env: Mapping[str, str] | None = None) -> NotifyConfig:
    """The notification config from the file at `path` (NIM_NOTIFY_CONFIG) and the variables
    in `env` (NIM_TARGET_<SCHEME>, NIM_ADMIN_TARGETS, NIM_UI_URL), both given by the service's
    settings (`Settings.notify_config_path`, `Settings.notify_env`)."""
    return _load(path, tuple(sorted((env or {}).items())))


@lru_cache(maxsize=8)
def _load(path: str | None, env: tuple[tuple[str, str], ...]) -> NotifyConfig:
    data: dict = {}
    if path:
        file = Path(path)
        if not file.is_file():
            raise NotifyConfigError(f"NIM_NOTIFY_CONFIG points at {path}, which does not exist")
        mode = file.stat().st_mode & 0o777
        if mode & 0o077 and os.name == "posix":  # it holds secrets: refused, as ssh does keys
            raise NotifyConfigError(f"NIM_NOTIFY_CONFIG {path} is readable by others (mode "
                                    f"{mode:04o}) and holds secrets; run `chmod 600 {path}`")
        try:
            raw = read_bounded(file, "NIM_NOTIFY_CONFIG")
        except ConfigError as exc:
            raise NotifyConfigError(str(exc)) from None
        try:
            text = raw.decode("utf-8")
            if too_deeply_nested(text):
                raise RecursionError
            data = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:  # never the offending line: it may hold a password
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise NotifyConfigError(f"NIM_NOTIFY_CONFIG {path} is not valid YAML{where}: "
                                    + scrub_text(getattr(exc, "problem", None) or "syntax error")
                                    ) from None
        except OSError as exc:
            raise NotifyConfigError(f"NIM_NOTIFY_CONFIG {path} cannot be read "
                                    f"({exc.strerror}); the service user must own it") from None
        except RecursionError:
            raise NotifyConfigError(f"NIM_NOTIFY_CONFIG {path} is nested too deeply to be a "
                                    "notification config") from None
        except ValueError as exc:  # not UTF-8, or a date or number YAML cannot build
            what = ("is not UTF-8 text; save it as UTF-8" if isinstance(exc, UnicodeDecodeError)
                    else "holds a date or number out of range")
            raise NotifyConfigError(f"NIM_NOTIFY_CONFIG {path} {what}") from None
    try:
        config = NotifyConfig.model_validate(data)
    except ValidationError as exc:  # locations and error types only, never the values
        problems = scrub_text("; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'config'} ({e['type']})"
            for e in exc.errors()))
        raise NotifyConfigError(f"NIM_NOTIFY_CONFIG {path or '(environment)'} is not a valid "
                                f"notification config: {problems}") from None
    for key, value in env:
        if key.startswith("NIM_TARGET_"):
            name = key.removeprefix("NIM_TARGET_").lower().replace("_", "-")
            config.targets[name] = value
            config.channels[name] = value
        elif key == "NIM_ADMIN_TARGETS":
            config.admin = [u.strip() for u in value.split(",") if u.strip()]
        elif key == "NIM_UI_URL":
            config.ui_url = value.rstrip("/")
    _check_urls(config)
    return config


def _check_urls(config: NotifyConfig) -> None:
    """The UI link is an http(s) address (it goes into every message as a link) and each
    admin target a URL Apprise can send to; refused with where it came from, never the URL
    itself (it may hold a password)."""
    from urllib.parse import urlsplit

    parts = urlsplit(config.ui_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotifyConfigError(f"NIM_UI_URL (ui_url) must be the Prefect UI's http:// or "
                                f"https:// address, like http://127.0.0.1:4200; its scheme is "
                                f"{scrub_text(parts.scheme[:20]) or 'missing'}")
    if not config.admin:
        return
    import logging

    import apprise

    quiet = logging.getLogger("apprise")
    level, quiet.level = quiet.level, logging.CRITICAL + 1  # its warning repeats the URL
    try:
        refused = [n for n, url in enumerate(config.admin, 1) if not apprise.Apprise().add(url)]
    finally:
        quiet.setLevel(level)
    if refused:
        url = config.admin[refused[0] - 1]
        scheme = scrub_text(url.partition("://")[0][:20]) if "://" in url else "missing"
        raise NotifyConfigError(
            f"admin target {refused[0]} (NIM_ADMIN_TARGETS or admin:) is not a URL Apprise can "
            f"send to (scheme {scheme}); give one such as mailtos://... or json://host/path")

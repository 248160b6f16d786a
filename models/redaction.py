"""Secrets out of sight: the one place that masks credentials in URLs and free text.

Every URL the engine shows or logs (the case store's `NIM_DATABASE_URL`, notification targets,
practitioners' contacts, delivery errors) goes through `mask_url`, which hides

- a password in the userinfo (`postgresql://u:***@host/db`, `mailtos://nim:***@smtp...`),
- the value of query parameters named like a credential (`?password=***`, `pass`, `pwd`,
  `token`, `secret`, `key`, `apikey`, `sig`, `code`, ...),
- path segments (and token-like hosts or users) that look like random tokens, as webhook URLs
  carry them (`json://host/hook/***`, `https://hooks.slack.com/services/T0/B0/***`).

A contact is refused when masking it changes it (`carries_credentials`): credentials belong in
the notification config (NIM_NOTIFY_CONFIG), and the contact names a target.
Kept free of imports beyond the standard library so every layer can use it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"
_SECRET_NAMES = re.compile(r"pass|pwd|token|secret|key|sig|auth|credential|session|bearer")
_SECRET_EXACT = {"code", "jwt", "hash", "hmac", "otp", "pin"}
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-.:@=+~%]+")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_PAIR_IN_TEXT = re.compile(
    r"(?i)\b([\w-]*(?:password|passwd|pwd|pass|token|secret|apikey|api_key|sig)[\w-]*)"
    r"(\s*[=:]\s*)([^\s&'\",;]+)")
_NO_PATH_TOKENS = ("sqlite", "file", "postgres")  # paths there are files or database names


def _secret_name(name: str) -> bool:
    """A query parameter named like a credential (`password`, `api_key`, `X-Sig`, `code`)."""
    name = re.sub(r"[^a-z]", "", unquote(name).lower())
    return bool(_SECRET_NAMES.search(name)) or name in _SECRET_EXACT


def looks_random(segment: str) -> bool:
    """A path segment, host or user that looks like a generated token: long, token characters,
    digits mixed with letters or upper case mixed with lower (a UUID, a hex or base64 key).
    Words, phone numbers and host names with dots do not."""
    s = unquote(segment)
    if len(s) < 16 or not _TOKEN_CHARS.fullmatch(s):
        return False
    digits = sum(c.isdigit() for c in s)
    upper = sum(c.isupper() for c in s)
    lower = sum(c.islower() for c in s)
    return ((digits >= 3 and upper + lower >= 3) or (len(s) >= 20 and upper >= 3 and lower >= 3)
            or (digits >= 1 and upper >= 8 and lower == 0))  # AKIA... style keys


def _webhook_path(host: str, segments: list[str]) -> list[str]:
    """A webhook's path after its fixed part (`hooks.slack.com/services/`, `/webhook/`,
    `/api/webhooks/`) is its credential: every id or token there is masked, words are kept."""
    marker = next((i for i, seg in enumerate(segments)
                   if seg.lower() in ("webhook", "webhooks", "services", "hooks", "hook")), None)
    if marker is None and not re.match(r"(?i)(hooks?\.|.*webhook)", host):
        return segments
    start = 0 if marker is None else marker + 1
    return segments[:start] + [
        MASK if len(seg) >= 8 and not re.fullmatch(r"[A-Z]?[a-z]+(?:[A-Z][a-z]+)*", seg) else seg
        for seg in segments[start:]]


def _mask_netloc(netloc: str) -> str:
    userinfo, at, hostport = netloc.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        userinfo = (MASK if looks_random(user) else user) + (f":{MASK}" if colon else "")
    # a host is a token only when it is not a plausible DNS name (Apprise puts tokens there)
    host = hostport.rsplit(":", 1)[0] if re.search(r":\d+$", hostport) else hostport
    if looks_random(host) and ("." not in host or host != host.lower()):
        hostport = MASK + hostport[len(host):]
    return f"{userinfo}{at}{hostport}"


def _mask_query(query: str) -> str:
    out = []
    for pair in query.split("&"):
        name, eq, value = pair.partition("=")
        if eq and value and (_secret_name(name) or looks_random(value)):
            value = MASK
        out.append(f"{name}{eq}{value}")
    return "&".join(out)


def mask_url(url: str | None) -> str | None:
    """The URL with every credential replaced by `***`; anything else is kept as written.
    Text without `scheme://` (a named target like `email:chen@nhs.net`) is returned as is."""
    if not url or "://" not in url:
        return url
    scheme, _, rest = url.partition("://")
    rest, hash_, fragment = rest.partition("#")
    rest, qmark, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    netloc = _mask_netloc(netloc)
    if path and not scheme.lower().startswith(_NO_PATH_TOKENS):
        segments = [MASK if looks_random(seg) else seg for seg in path.split("/")]
        path = "/".join(_webhook_path(netloc.rpartition("@")[2], segments))
    if query:
        query = _mask_query(query)
    if fragment and looks_random(fragment):
        fragment = MASK
    return f"{scheme}://{netloc}{slash}{path}{qmark}{query}{hash_}{fragment}"


def carries_credentials(url: str | None) -> bool:
    """Whether the URL holds anything `mask_url` would hide."""
    return bool(url) and mask_url(url) != url


def scrub_text(text: str) -> str:
    """Free text (an error message, a log line) with URLs masked and `password=...`,
    `token: ...` pairs hidden."""
    text = _URL_IN_TEXT.sub(lambda m: mask_url(m.group(0)) or "", text)
    return _PAIR_IN_TEXT.sub(lambda m: m.group(1) + m.group(2) + MASK
                             if m.group(3) != MASK else m.group(0), text)

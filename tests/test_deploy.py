"""deploy/nginx/nim-pathway.conf, run for real: nginx (basic auth standing in for the
organisation's sign-on) in front of a Prefect server that has PREFECT_SERVER_API_AUTH_STRING.

Browser users get through with their sign-on credentials only; nginx swaps in Prefect's auth
string. Workers and the CLI on the server host talk to Prefect directly with
PREFECT_API_AUTH_STRING. docs/DEPLOY.md describes the arrangement.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from nim_pathway.stack import stop_group
from tests.prefect_stack import Stack, free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "nginx" / "nim-pathway.conf"
SSO_USER = "alice"


def _tools_or_skip() -> tuple[str, str]:
    found = {name: shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
             for name in ("nginx", "openssl")}
    missing = [name for name, path in found.items() if not path]
    if missing:
        if os.environ.get("NIM_REQUIRE_NGINX"):
            pytest.fail(f"the reverse-proxy test is required here (NIM_REQUIRE_NGINX) but "
                        f"{', '.join(missing)} is not installed")
        pytest.skip(f"the reverse-proxy test needs {', '.join(missing)} "
                    f"(apt-get install nginx openssl)")
    return found["nginx"], found["openssl"]


def render(template: str, values: dict[str, str]) -> str:
    """Fill the @@NAME@@ placeholders; refuse to leave any behind."""
    for name, value in values.items():
        template = template.replace(f"@@{name}@@", value)
    code = "\n".join(line.split("#", 1)[0] for line in template.splitlines())
    left = re.findall(r"@@[A-Z_]+@@", code)
    assert not left, f"unfilled placeholders in the nginx config: {left}"
    return template


def _wait_port(port: int, proc: subprocess.Popen, log: Path, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nginx did not listen on {port}: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    nginx, openssl = _tools_or_skip()
    tmp = tmp_path_factory.mktemp("deploy")
    sso_password = secrets.token_urlsafe(12)
    auth_string = f"admin:{secrets.token_urlsafe(18)}"
    proxy_port = free_port()
    proxy = f"http://127.0.0.1:{proxy_port}"

    stack = Stack(tmp, f"sqlite:///{tmp / 'cases.db'}",
                  prefect_db_url=f"sqlite+aiosqlite:///{tmp / 'prefect.db'}")
    stack.env.pop("PREFECT_API_KEY", None)  # an API key would take precedence and fail
    stack.env.update({
        "PREFECT_SERVER_API_AUTH_STRING": auth_string,
        "PREFECT_API_AUTH_STRING": auth_string,
        "PREFECT_UI_API_URL": f"{proxy}/api",  # the browser reaches the API via the proxy
    })

    hashed = subprocess.run([openssl, "passwd", "-6", "-stdin"], input=sso_password,
                            capture_output=True, text=True, check=True).stdout.strip()
    htpasswd = tmp / "htpasswd"
    htpasswd.write_text(f"{SSO_USER}:{hashed}\n")
    site = tmp / "nim-pathway.conf"
    site.write_text(render(TEMPLATE.read_text(), {
        "LISTEN": f"127.0.0.1:{proxy_port}",
        "SERVER_NAME": "localhost",
        "HTPASSWD_FILE": str(htpasswd),
        "PREFECT_UPSTREAM": f"127.0.0.1:{stack.port}",
        "PREFECT_AUTH_BASIC": base64.b64encode(auth_string.encode()).decode(),
    }))
    site.chmod(0o600)
    # The main config Debian's /etc/nginx/nginx.conf would be, with every path in tmp.
    temp = "\n".join(f"  {kind}_temp_path {tmp / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = tmp / "nginx.conf"
    main.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")  # workers read the tmp htpasswd
        + f"pid {tmp / 'nginx.pid'};\nerror_log {tmp / 'error.log'} warn;\n"
        + f"events {{}}\nhttp {{\n  access_log {tmp / 'access.log'};\n{temp}\n"
        + f"  include {site};\n}}\n")
    args = [nginx, "-e", str(tmp / "error.log"), "-c", str(main), "-p", str(tmp)]
    check = subprocess.run([*args, "-t"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr

    proxy_proc = None
    try:
        stack.start_server()
        proxy_proc = subprocess.Popen([*args, "-g", "daemon off;"], start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(proxy_port, proxy_proc, tmp / "error.log")
        yield {"proxy": proxy, "direct": f"http://127.0.0.1:{stack.port}",
               "sso": (SSO_USER, sso_password), "auth_string": auth_string, "tmp": tmp}
    finally:
        if proxy_proc is not None:
            stop_group(proxy_proc, grace=10)
        stack.stop_server()


def test_sso_proxy_in_front_of_prefect_auth_string(proxied):
    proxy, direct, sso = proxied["proxy"], proxied["direct"], proxied["sso"]
    admin, secret = proxied["auth_string"].split(":", 1)

    # (a) no credentials: the proxy turns the browser away, UI and API alike
    for path in ("/", "/api/health", "/api/admin/version"):
        r = httpx.get(proxy + path)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"].startswith("Basic")
    # (b) a wrong sign-on password, and Prefect's own secret, are not sign-on credentials
    assert httpx.get(proxy + "/", auth=(SSO_USER, "wrong")).status_code == 401
    assert httpx.get(proxy + "/api/health", auth=(admin, secret)).status_code == 401

    # (c) the right sign-on credentials reach the API and the UI
    with httpx.Client(base_url=proxy, auth=sso) as browser:
        assert browser.get("/api/health").status_code == 200
        page = browser.get("/", headers={"Accept": "text/html"}, follow_redirects=True)
        assert page.status_code == 200
        assert "text/html" in page.headers["content-type"] and "<html" in page.text
        # ...including endpoints Prefect itself guards with its auth string
        version = browser.get("/api/admin/version")
        assert version.status_code == 200, version.text
        flows = browser.post("/api/flows/filter", json={"limit": 5})
        assert flows.status_code == 200 and flows.json() == []
        settings = browser.get("/ui-settings").json()

        # (f) ...while the browser held only its sign-on credentials
        sent = version.request.headers["authorization"]
        assert base64.b64decode(sent.split()[1]).decode() == f"{SSO_USER}:{sso[1]}"
        assert secret not in json.dumps(dict(version.request.headers))
        # and the UI is told there is no second login to show (Prefect says BASIC directly)
        assert settings["auth"] is None
        assert settings["api_url"] == f"{proxy}/api"
        assert secret not in json.dumps(settings)

    # (d) straight to Prefect, bypassing the proxy: the auth string is required
    assert httpx.get(f"{direct}/ui-settings").json()["auth"] == "BASIC"
    assert httpx.get(f"{direct}/api/admin/version").status_code == 401
    assert httpx.get(f"{direct}/api/admin/version", auth=(SSO_USER, sso[1])).status_code == 401
    assert httpx.get(f"{direct}/api/health").status_code == 200  # Prefect leaves health open

    # (e) ...and works with it, as workers and the CLI on the server host use it
    assert httpx.get(f"{direct}/api/admin/version", auth=(admin, secret)).status_code == 200
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: f"{direct}/api",
                             PREFECT_API_AUTH_STRING: proxied["auth_string"]}):
        with get_client(sync_client=True) as client:
            assert client.read_flows() == []

    # nginx's access log names the signed-in person for each request
    log = (proxied["tmp"] / "access.log").read_text()
    assert f" {SSO_USER} [" in log


def test_websockets_pass_the_proxy_but_prefect_checks_them_itself(proxied):
    """The upgrade headers work; Prefect authenticates a websocket by its first message, so
    the header nginx injects does not let a browser through without the auth string."""
    from websockets.sync.client import connect

    url = proxied["proxy"].replace("http", "ws") + "/api/events/out"
    sso = "Basic " + base64.b64encode(":".join(proxied["sso"]).encode()).decode()
    for token, expected in ((proxied["auth_string"], "auth_success"), (None, None)):
        with connect(url, subprotocols=["prefect"], additional_headers={"Authorization": sso},
                     open_timeout=10) as ws:
            ws.send(json.dumps({"type": "auth", "token": token}))
            try:
                reply = json.loads(ws.recv(timeout=10))["type"]
            except Exception:  # noqa: BLE001 - closed by the server (policy violation)
                reply = None
            assert reply == expected

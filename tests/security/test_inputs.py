"""Inputs are bounded and plain (issue 28, E): one-time codes are ASCII digits, names carry
no hidden characters, free text and numbers have bounds, and the notification settings hold
an http(s) UI link and admin targets Apprise can send to."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from models.errors import Invalid, Refused
from models.refs import TaskRef
from models.schemas import MAX_FREE_TEXT, ChildIn, PractitionerIn, Referral
from notifications.config import NotifyConfigError, load_config
from tests.conftest import referral_data

FULLWIDTH = "\uff11\uff12\uff13\uff14\uff15\uff16"  # "１２３４５６"
CLI = str(Path(sys.executable).parent / "nim-pathway")


@pytest.mark.parametrize("code", [FULLWIDTH, "١٢٣٤٥٦", "12345６", "12 345", "½12345"])
def test_a_code_that_is_not_ascii_digits_is_refused_never_a_crash(site, code):
    """The Resume form (with its attempt id) and the open-case form call authenticate as the
    CLI does; each gets a refusal, counted as a wrong code."""
    svc, _ = site
    with pytest.raises(Refused, match="wrong or reused one-time code"):
        svc.identity.authenticate("psy.chen", code, "NIM-2026-0001", "attempt-1")
    with pytest.raises(Refused, match="wrong or reused one-time code"):
        svc.identity.authenticate("coord.ali", code)


def test_cli_login_with_a_fullwidth_code_is_a_refusal(cli_env):
    proc = subprocess.run([CLI, "login", "--as", "nobody.here", "--code", FULLWIDTH],
                          env=cli_env, capture_output=True, text=True, timeout=120,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 2, proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("name", "why"), [
    ("Ali\u202ece", "U+202E"),  # right-to-left override
    ("Ali\nce", "U+000A"),  # a newline: two lines in a name
    ("Ali\u200bce", "U+200B"),  # zero-width space
    ("Ali\u200dce", "U+200D"),  # zero-width joiner
    ("Ali\u2066ce", "U+2066"),  # left-to-right isolate
])
def test_names_refuse_hidden_characters(name, why):
    with pytest.raises(ValidationError, match=re.escape(why)):
        ChildIn(given_name=name, family_name="Smith", date_of_birth="2025-01-01")
    with pytest.raises(ValidationError, match=re.escape(why)):
        ChildIn(given_name="Ann", family_name=name, date_of_birth="2025-01-01")
    with pytest.raises(ValidationError, match=re.escape(why)):
        Referral.model_validate(referral_data(caregivers=[{"relationship": "mother",
                                                           "name": name}]))
    with pytest.raises(ValidationError, match=re.escape(why)):
        PractitionerIn(handle="a.b", display_name=name, role="psychologist", team="nim")
    assert ChildIn(given_name="Siân", family_name="O'Brien-Núñez",
                   date_of_birth="2025-01-01").given_name == "Siân"  # accents are names


def test_free_text_is_bounded_and_plain(site):
    svc, _ = site
    ref = svc.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    with pytest.raises(Invalid, match=f"100000 characters; at most {MAX_FREE_TEXT}"):
        svc.tasks.reassign(TaskRef(ref, "triage"), "mgr.okafor", "mgr.okafor", "x" * 100_000)
    with pytest.raises(Invalid, match="right-to-left override"):
        svc.tasks.reassign(TaskRef(ref, "triage"), "mgr.okafor", "mgr.okafor", "ok\u202eko")
    with pytest.raises(Invalid, match="the reason is"):
        svc.cases.pause(ref, "y" * (MAX_FREE_TEXT + 1), "coord.ali")  # kept by the audit only
    assert svc.queries.task(ref, "triage").handover_note is None  # nothing was written
    svc.tasks.reassign(TaskRef(ref, "triage"), "mgr.okafor", "mgr.okafor", "n" * MAX_FREE_TEXT)


def test_previous_episode_is_a_case_reference_of_bounded_size():
    with pytest.raises(ValidationError, match="previous_episode"):
        Referral.model_validate(referral_data(previous_episode="NIM-2026-" + "9" * 5000))
    with pytest.raises(ValidationError, match="previous_episode"):
        Referral.model_validate(referral_data(previous_episode="NIM-2026-\uff10\uff10\uff10\uff11"))
    assert Referral.model_validate(referral_data(previous_episode="NIM-2025-0042"))


@pytest.mark.parametrize("url", ["javascript:alert(document.cookie)", "file:///etc/passwd",
                                 "ftp://ui.example.org", "http://"])
def test_the_ui_link_must_be_http(url):
    with pytest.raises(NotifyConfigError, match="NIM_UI_URL .* http:// or https://"):
        load_config(None, {"NIM_UI_URL": url})
    assert load_config(None, {"NIM_UI_URL": "https://prefect.nim.example.org/"}).ui_url == \
        "https://prefect.nim.example.org"


def test_admin_targets_must_be_urls_apprise_can_send_to():
    with pytest.raises(NotifyConfigError, match=r"admin target 2 .*scheme garbage") as err:
        load_config(None, {"NIM_ADMIN_TARGETS": "json://127.0.0.1:9/ops,garbage://u:pw@x"})
    assert "pw" not in str(err.value)  # never the URL: it may hold a password
    with pytest.raises(NotifyConfigError, match="admin target 1"):
        load_config(None, {"NIM_ADMIN_TARGETS": "not a url"})
    assert load_config(None, {"NIM_ADMIN_TARGETS": "json://127.0.0.1:9/ops"}).admin

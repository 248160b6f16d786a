"""Referral checks (issue 27): a child listed twice is refused by position, never by name; a
referral for a child already on an open case is refused naming that case unless a new episode
is confirmed; a final order cannot claim to follow a recommendation that does not exist."""

from __future__ import annotations

from datetime import date

import pytest
import yaml
from pydantic import ValidationError
from sqlmodel import select

from models.errors import Invalid
from models.schemas import Referral
from store.db import session_scope
from store.tables import AuditEvent, Case, Child, Decision
from tests.cli_team import log_in_team
from tests.conftest import referral_data

KID = {"given_name": "Sentinel-Given", "family_name": "Sentinel-Family",
       "date_of_birth": "2025-06-01"}


def test_the_same_child_twice_is_refused_by_position_never_by_name():
    twin = {"given_name": "Sentinel-Twin", "family_name": "Sentinel-Family",
            "date_of_birth": "2025-06-01"}
    again = {"given_name": "  sentinel-given ", "family_name": "SENTINEL-FAMILY",
             "date_of_birth": "2025-06-01"}
    data = referral_data(children=[KID, twin, again])
    data.pop("child")
    with pytest.raises(ValidationError) as caught:
        Referral.model_validate(data)
    text = str(caught.value)
    assert "child 1 and child 3" in text
    problem = [e["msg"] for e in caught.value.errors()][0]
    assert "child 1 and child 3" in problem and "Sentinel" not in problem
    # twins (same family name and birthday, different given names) are two children
    data["children"] = [KID, twin]
    assert len(Referral.model_validate(data).all_children) == 2


def _open(store, **over):
    over.setdefault("new_episode", False)  # the check under test (conftest confirms by default)
    return store.cases.open_case(Referral.model_validate(referral_data(**over)), "coord.ali").ref


def test_a_referral_for_a_child_on_an_open_case_is_refused_unless_a_new_episode(store):
    first = _open(store)
    with session_scope(store.url) as s:
        digest = s.exec(select(Child.identity_digest)).one()
    assert digest and "Sentinel" not in digest and len(digest) == 64
    audit_before = len(_audit(store))
    # the same child, written differently: refused, naming the open case, nothing written
    other = {**KID, "given_name": "SENTINEL-given  ", "address": "elsewhere"}
    with pytest.raises(Invalid) as caught:
        _open(store, child=other)
    message = str(caught.value)
    assert first in message and "new_episode: true" in message and "--new-episode" in message
    assert "Sentinel" not in message and "2025-06-01" not in message
    assert _cases(store) == [first] and len(_audit(store)) == audit_before
    # a different child opens; the confirmed new episode opens
    assert _open(store, child={**KID, "given_name": "Someone-Else"}) != first
    second = _open(store, new_episode=True, previous_episode=first)
    assert second not in (first,) and len(_cases(store)) == 3
    # once the open cases are closed, the child may be referred again without a word
    store.cases.exit_case(first, "disengaged", "", "coord.ali")
    with pytest.raises(Invalid, match=second):
        _open(store)
    store.cases.exit_case(second, "disengaged", "", "coord.ali")
    assert _open(store) not in _cases(store)[:3]


def test_the_digest_is_keyed_outside_the_database(store, db_url, clock):
    from dataclasses import replace

    from nim_pathway.commands.cases import CaseCommands

    child = Referral.model_validate(referral_data()).all_children[0]
    ours = store.cases.identity_digest(child)
    theirs = CaseCommands(replace(store.ctx, secret_key=b"another-key"),
                          store.queries, store.notify_config).identity_digest(child)
    assert ours != theirs


def _cases(store):
    with session_scope(store.url) as s:
        return list(s.exec(select(Case.ref).order_by(Case.ref)))


def _audit(store):
    with session_scope(store.url) as s:
        return list(s.exec(select(AuditEvent.id)))


def test_cli_refuses_a_second_opening_in_one_line_and_opens_with_new_episode(run, cli_env,
                                                                               tmp_path):
    log_in_team(cli_env, tmp_path / "sessions")
    referral = tmp_path / "referral.yaml"
    referral.write_text(yaml.safe_dump(referral_data(new_episode=False)))
    run("case", "open", "--file", str(referral), "--as", "coord.ali")
    refused = run("case", "open", "--file", str(referral), "--as", "coord.ali", code=2)
    assert refused.stderr.startswith("error: this referral matches an open case: the child is "
                                     "on open case NIM-2026-0001")
    assert len(refused.stderr.strip().splitlines()) == 1 and "Sentinel" not in refused.stderr
    out = run("case", "open", "--file", str(referral), "--new-episode", "--as", "coord.ali")
    assert out.stdout.startswith("opened NIM-2026-0002")
    twice = referral_data(children=[KID, {**KID, "address": "x"}])
    twice.pop("child")
    referral.write_text(yaml.safe_dump(twice))
    refused = run("case", "open", "--file", str(referral), "--as", "coord.ali", code=2)
    assert "child 1 and child 2" in refused.stderr and "Sentinel" not in refused.stderr


def test_a_final_order_cannot_follow_a_recommendation_that_does_not_exist(store, clock):
    ref = _open(store)
    audit_before = len(_audit(store))
    with pytest.raises(Invalid, match="no recommendation recorded"):
        store.court.record_final_order(ref, date(2026, 1, 12), "care-order", True, "coord.ali")
    assert store.queries.show(ref).court.final_order is None
    assert len(_audit(store)) == audit_before
    # with the D2 recommendation recorded, the order may follow it
    with store.ctx.write() as s:
        case = s.exec(select(Case).where(Case.ref == ref)).one()
        s.add(Decision(case_id=case.id, kind="d2", outcome="return-home",
                       decided_on=date(2026, 1, 12), decided_by="lead.singh"))
    store.court.record_final_order(ref, date(2026, 1, 12), "care-order", True, "coord.ali")
    assert store.queries.show(ref).court.final_order.follows_recommendation is True
    # departing from a recommendation never needs one
    ref2 = _open(store, child={**KID, "given_name": "Other"})
    store.court.record_final_order(ref2, date(2026, 1, 12), "care-order", False, "coord.ali")


def test_a_child_added_mid_case_is_matched_and_erasure_removes_the_digest(store, clock):
    """A sibling added to an open case is matched like a referral's child (a later referral for
    them is refused), and erasing the case removes every child's identity digest."""
    from models.schemas import ChildIn

    ref = _open(store)
    sibling = {"given_name": "Sentinel-Sibling", "family_name": "Sentinel-Family",
               "date_of_birth": "2026-01-02"}
    store.family.add_child(ref, ChildIn.model_validate(sibling), "coord.ali")
    with pytest.raises(Invalid, match=ref):
        _open(store, child=sibling)
    store.admin.erase(ref, "mgr.okafor", "erasure request")
    with session_scope(store.url) as s:
        assert s.exec(select(Child.identity_digest).where(
            Child.identity_digest.is_not(None))).all() == []

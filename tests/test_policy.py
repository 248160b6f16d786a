"""The access policy: one table (the pathway's `permissions:`), one function, every command."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from sqlmodel import select

from models.errors import NotFound, Refused
from models.pathway import DEFAULT_PERMISSIONS, PathwayError, load_pathway, parse_pathway
from models.refs import TaskRef
from models.schemas import Referral
from nim_pathway.demo import DEMO_ADMIN
from store.db import session_scope
from store.tables import AuditEvent
from tests.conftest import referral_data

ROOT = Path(__file__).resolve().parent.parent
ENGLAND = (ROOT / "pathways" / "england.yaml").read_text(encoding="utf-8")


def _permission_text(action: str, roles: str, version: str = "9.1") -> str:
    text = re.sub(rf"^  {action}: \[[^\]]*\]", f"  {action}: {roles}", ENGLAND, flags=re.M)
    return re.sub(r'^version: "[^"]*"', f'version: "{version}"', text, flags=re.M)


def _with_permission(action: str, roles: str, version: str = "9.1") -> object:
    return parse_pathway(_permission_text(action, roles, version))


def _refusals(url: str) -> list[AuditEvent]:
    with session_scope(url, read_only=True) as s:
        return list(s.exec(select(AuditEvent).where(AuditEvent.action == "refused")))


def test_both_profiles_state_every_action():
    for profile in ("england", "scotland"):
        assert set(load_pathway(profile).permissions) == set(DEFAULT_PERMISSIONS)


def test_the_pathway_table_decides_who_may_move_a_date(store, db_url, tmp_path):
    # the same command, two pathway versions: only the table differs
    _with_permission("move-date", "[la-social-worker]")  # valid
    edited = tmp_path / "england.yaml"
    # a hearing date is also the court's timetable's (issue 27 part 9): take that from the
    # coordinator too, so the move-date row alone decides
    text = re.sub(r"^  record-court-timetable: \[[^\]]*\]", "  record-court-timetable: "
                  "[la-solicitor]", _permission_text("move-date", "[la-social-worker]"),
                  flags=re.M)
    edited.write_text(text)
    store.identity.install_pathway(edited, DEMO_ADMIN.handle)
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    with pytest.raises(Refused, match="coord.ali is coordinator and may not move the case date "
                                      "final_hearing; it needs head-of-service or la-social-"
                                      "worker or la-solicitor or nim-service-manager"):
        store.cases.move_date(ref, "final_hearing", store.queries.today(), "listed",
                              "coord.ali")
    assert [r.actor for r in _refusals(db_url)] == ["coord.ali"]  # audited, though refused
    store.cases.move_date(ref, "final_hearing", store.queries.today(), "listed", "la.patel")
    assert store.queries.show(ref).dates["final_hearing"] == store.queries.today()


def test_the_la_solicitor_records_hearing_dates_not_other_dates(store, clock):
    # England's table: move-date [coordinator], record-court-timetable [coordinator,
    # la-solicitor]. The IRH and final hearing are the court's timetable (PD12A), which the LA
    # solicitor records (extensions, final orders): now its hearing dates too (issue 27 part 9)
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    today = store.queries.today()
    store.cases.move_date(ref, "issues_resolution_hearing", today, "listed", "la.sol.reid")
    store.cases.move_date(ref, "final_hearing", today, "listed", "la.sol.reid")
    assert {k: v for k, v in store.queries.show(ref).dates.items() if k in (
        "issues_resolution_hearing", "final_hearing")} == {
        "issues_resolution_hearing": today, "final_hearing": today}
    with pytest.raises(Refused, match="la.sol.reid is la-solicitor and may not move the case "
                                      "date referral; it needs coordinator or "):
        store.cases.move_date(ref, "referral", today, "typo", "la.sol.reid")
    with pytest.raises(Refused):  # a psychologist records no hearing date
        store.cases.move_date(ref, "final_hearing", today, "listed", "psy.chen")


def test_task_role_and_assignee_stand_ins(store, db_url):
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    triage = TaskRef(ref, "triage")  # for nim-service-manager, assigned to mgr.okafor
    with pytest.raises(Refused, match="it needs its current owner or"):
        store.tasks.reassign(triage, "mgr.okafor", "psy.chen", "")
    with pytest.raises(Refused):
        store.tasks.record_delay_cause(triage, "capacity", "", "psy.chen")
    store.tasks.record_delay_cause(triage, "capacity", "", "mgr.okafor")
    # a manager role may always act (head of service: neither the task's role nor its owner);
    # an unknown handle is not a role at all
    store.tasks.complete_task(triage, "hos.taylor", {"accepted": True})
    with pytest.raises(NotFound, match="unknown practitioner 'ghost'"):
        store.tasks.complete_task(TaskRef(ref, "consent-father"), "ghost", {})
    assert len(_refusals(db_url)) == 2


def test_erasure_is_for_managers_only(store):
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    with pytest.raises(Refused, match="may not erase identity"):
        store.admin.erase(ref, "coord.ali", reason="court order")
    store.admin.erase(ref, "mgr.okafor", reason="court order")


def test_a_malformed_permissions_table_is_refused_with_where():
    with pytest.raises(PathwayError, match=r"permissions\.move-date: unknown role 'wizard'"):
        _with_permission("move-date", "[wizard]")
    bad = ENGLAND.replace("  erase-identity: []", "  erase-identity: []\n  fly: [coordinator]")
    with pytest.raises(PathwayError, match=r"permissions\.fly: unknown action"):
        parse_pathway(bad)


def test_no_role_names_in_the_command_layer():
    """Who may do what is in the pathway files, not in Python: no role literal in commands,
    the policy, reports, notifications, flows or tasks."""
    roles = set().union(*(load_pathway(p).roles for p in ("england", "scotland")))
    found = []
    for folder in ("nim_pathway/commands", "reports", "notifications", "flows", "tasks", "store"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and node.value in roles:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value}")
    assert not found


def test_unknown_actors_are_audited_but_cannot_flood_the_log(store, db_url):
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    for n in range(25):
        with pytest.raises(NotFound):
            store.cases.move_date(ref, "final_hearing", store.queries.today(), "x",
                                  f"nobody; rm -rf / {n}")
    with session_scope(db_url, read_only=True) as s:
        rows = list(s.exec(select(AuditEvent).where(
            AuditEvent.action == "refused-unknown-actor")))
    assert len(rows) == 20  # rate-limited: an hour's worth
    assert rows[0].detail["action"] == "move-date"


def test_a_pathway_is_named_never_passed_as_a_file(store, db_url, tmp_path):
    """A forged copy of england.yaml that makes psychologists managers gets nowhere: a referral
    cannot name a file, only an admin installs, and cases open on installed versions only."""
    from pydantic import ValidationError

    from models.errors import Invalid

    forged = tmp_path / "england.yaml"
    forged.write_text(_permission_text("erase-identity", "[psychologist]", "2099.1"))
    with pytest.raises(ValidationError, match="pathway"):
        Referral.model_validate(referral_data(pathway=str(forged)))
    with pytest.raises(Refused, match="psy.chen is psychologist and may not install-pathway; "
                                      "it needs admin"):
        store.identity.install_pathway(forged, "psy.chen")
    assert [r.detail["action"] for r in _refusals(db_url)] == ["install-pathway"]
    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    assert store.queries.pathway(ref).version == load_pathway("england").version
    with pytest.raises(Refused, match="may not erase identity"):
        store.admin.erase(ref, "psy.chen", reason="forged rights")
    with pytest.raises(Invalid, match="not installed here"):
        store.cases.open_case(Referral.model_validate(referral_data(
            pathway="england-forged")), "coord.ali")


def test_a_replayed_form_refusal_is_audited_once(store, db_url):
    from models.refs import TaskRef

    ref = store.cases.open_case(Referral.model_validate(referral_data()), "coord.ali").ref
    for _ in range(2):  # the flow replays after its process restarts: same form attempt
        with pytest.raises(Refused):
            store.tasks.complete_task(TaskRef(ref, "triage"), "la.patel", {},
                                      via="run-1/1")
    assert len(_refusals(db_url)) == 1

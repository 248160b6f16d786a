"""The demo: a fictional case driven through the whole pathway on a virtual clock."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta

from rich.console import Console
from rich.table import Table

from models.clock import UK, VirtualClock, today
from models.refs import TaskRef
from models.schemas import PractitionerIn, Referral
from models.simulate import sample_outcome
from nim_pathway.app import Service, build_service
from nim_pathway.settings import Settings

DEMO_TEAM = [
    ("coord.ali", "Ali Coordinator", "coordinator", "nim"),
    ("mgr.okafor", "Dr Okafor", "nim-service-manager", "nim"),
    ("lead.singh", "Dr Singh", "clinical-lead", "nim"),
    ("psych.ward", "Dr Ward", "psychiatrist", "nim"),
    ("psy.chen", "Dr Chen", "psychologist", "nim"),
    ("sw.jones", "Sam Jones", "nim-social-worker", "nim"),
    ("fsw.brown", "Lee Brown", "family-support-worker", "nim"),
    ("la.patel", "Priya Patel", "la-social-worker", "local-authority"),
    ("la.tm.evans", "Jo Evans", "la-team-manager", "local-authority"),
    ("la.hos.ward", "Alex Ward", "la-head-of-service", "local-authority"),
    ("la.sol.reid", "Morgan Reid", "la-solicitor", "local-authority"),
    ("iro.khan", "Sara Khan", "iro", "local-authority"),
    ("ro.fraser", "Ross Fraser", "reviewing-officer", "local-authority"),
    ("hos.taylor", "Chris Taylor", "head-of-service", "nim"),
    # the site's FDAC team (pathways/fdac-england.yaml); the LA's people work on both
    ("fdac.tm.hughes", "Dana Hughes", "fdac-team-manager", "fdac"),
    ("fdac.clin.rao", "Dr Rao", "fdac-clinician", "fdac"),
    ("fdac.sw.okoro", "Femi Okoro", "fdac-social-worker", "fdac"),
    ("fdac.smw.lane", "Kit Lane", "substance-misuse-worker", "fdac"),
    ("fdac.pm.doyle", "Pat Doyle", "parent-mentor", "fdac"),
    ("fdac.lead.moss", "Robin Moss", "fdac-service-lead", "fdac"),
]


DEMO_SERIES = "DEMO"  # the virtual demo's case references: DEMO-0001, DEMO-0002, …


DEMO_ADMIN = PractitionerIn(handle="admin.demo", display_name="Demo Site Admin", role="admin",
                            team="it")


def seed_team(svc: Service, inbox_port: int | None = None) -> None:
    """The fictional team: the site's first admin (as `nim-pathway init` makes it), who then
    adds everyone else (as `practitioner add` does), each of whom enrols with the code sent to
    them (the demo plays them all: `accept_enrolment`). With `inbox_port` (the demo
    and the local stack), each one's contact is their box in the local inbox on that port, so
    their messages can be read there; without it (tests, benchmarks) nobody has a contact."""
    from notifications.inbox import DOMAIN, inbox_url

    known = ensure_admin(svc)
    contacts = {p.handle: p.contact for p in svc.queries.practitioners()}
    for handle, name, role, team in DEMO_TEAM:
        contact = inbox_url(handle, inbox_port) if inbox_port else None
        if handle not in known:
            svc.admin.add_practitioner(PractitionerIn(handle=handle, display_name=name,
                                                      role=role, team=team, contact=contact),
                                       DEMO_ADMIN.handle)
            accept_enrolment(svc, handle)  # each one enrols with the code sent to them
            continue
        current = contacts.get(handle)
        # seeded before with no contact or another inbox port; one set by hand is kept
        if contact and current != contact and (current is None or f"@{DOMAIN}" in current):
            svc.admin.update_practitioner(handle, DEMO_ADMIN.handle, contact=contact)


def ensure_admin(svc: Service) -> set[str]:
    """Initialise the site with the demo admin unless that was done; the known handles."""
    known = {p.handle for p in svc.queries.practitioners()}
    if DEMO_ADMIN.handle not in known:
        svc.identity.init_site(DEMO_ADMIN)
    return known


def demo_code(settings: Settings, handle: str) -> str:
    """A demo practitioner's code now, on a site the demo set up (never on a real one: the
    site must have been initialised by the demo admin)."""
    from sqlmodel import select

    from models.errors import Refused
    from store.tables import AuditEvent

    svc = build_service(settings=settings)
    with svc.ctx.read() as session:
        first = session.exec(select(AuditEvent).where(
            AuditEvent.action == "site-initialised").limit(1)).first()
    if first is None or first.actor != DEMO_ADMIN.handle:
        raise Refused("this is not a demo site; people read their codes from their own "
                      "authenticator app")
    if handle not in {h for h, *_ in DEMO_TEAM} | {DEMO_ADMIN.handle}:
        raise Refused(f"{handle!r} is not in the demo team")
    return current_code(svc, handle)


def current_code(svc: Service, handle: str) -> str:
    """The one-time code `handle`'s authenticator app would show now (demo and tests only: it
    reads the enrolled secret with the site's secret key, as the service itself can)."""
    from sqlmodel import select

    from nim_pathway.commands.identity import code_at
    from nim_pathway.commands.people import enrolled
    from store.tables import Practitioner

    with svc.ctx.read() as session:
        row = session.exec(select(Practitioner).where(Practitioner.handle == handle)).one()
    if not enrolled(row):
        accept_enrolment(svc, handle)
        with svc.ctx.read() as session:
            row = session.exec(select(Practitioner).where(Practitioner.handle == handle)).one()
    return code_at(svc.identity.enrolled_secret(row), svc.ctx.now())


def accept_enrolment(svc: Service, handle: str) -> None:
    """Enrol `handle` as the person would with the code an admin had sent them (demo and
    tests only: the demo plays everyone). The code is read from their queued message with the
    service's secret key, or, when none was queued (no contact), issued again here."""
    from sqlmodel import select

    from nim_pathway.commands import people
    from store.tables import Outbox

    with svc.ctx.write() as session:
        sent = session.exec(select(Outbox).where(
            Outbox.kind == "enrolment", Outbox.recipient == f"practitioner:{handle}")
            .order_by(Outbox.id.desc())).first()
        sealed = (sent.meta or {}).get("sealed_code") if sent is not None else None
        if sealed:
            code = people.open_code(svc.ctx.secret_key, sealed)
        else:
            row = people.person(session, handle)
            code, _ = people.invite(row, svc.ctx.secret_key, svc.ctx.now())
            people.save(session, row, svc.ctx.secret_key)
    svc.identity.redeem_enrolment(handle, code)


@contextmanager
def demo_delivery(svc: Service, console: Console) -> Iterator[Callable[[], int]]:
    """A function that delivers the demo's queued messages to the local inbox, as a sweep
    would: to the stack's inbox if it runs, else to one started here for the demo's length
    (its files stay for `nim-pathway inbox`). Admin alerts go to its admin box unless admin
    targets are configured."""
    from notifications.dispatcher import Dispatcher
    from notifications.inbox import ADMIN_BOX, HOST, Inbox, inbox_url

    smtp_port, web_port = svc.settings.inbox_ports
    inbox = None
    try:
        socket.create_connection((HOST, smtp_port), timeout=1).close()  # the stack's runs
    except OSError:
        try:
            inbox = Inbox(svc.settings.inbox_dir, svc.clock, smtp_port, web_port).start()
        except OSError as exc:  # a port taken by something else: the demo goes on
            console.print(f"[yellow]The local inbox could not start ({exc.strerror}); the "
                          "demo's messages stay in its outbox.[/]")
            yield lambda: 0
            return
    config = svc.notify_config()
    if not config.admin:
        config = config.model_copy(update={"admin": [inbox_url(ADMIN_BOX, smtp_port)]})
    dispatcher = Dispatcher(svc.url, svc.clock, config, open_sealed=svc.dispatcher().open_sealed)
    try:
        yield lambda: dispatcher.run_until_idle().sent
    finally:
        if inbox is not None:
            inbox.stop()


def run_demo(settings: Settings, profile: str = "england", no_treatment: bool = False) -> None:
    console = Console(width=max(Console().width, 120))
    db = settings.data_dir / f"demo-{profile}.db"
    db.unlink(missing_ok=True)
    clock = VirtualClock(datetime(2026, 1, 12, 9, 0, tzinfo=UK))
    svc = build_service(f"sqlite:///{db}", clock, settings=settings)
    svc.ctx.ref_series = DEMO_SERIES  # DEMO-0001: never a live case's reference
    seed_team(svc, settings.inbox_ports[0])
    read = svc.queries
    scotland = profile == "scotland"
    from notifications.inbox import InboxStore

    emptied = InboxStore(settings.inbox_dir).clear()  # each demo's messages, once
    if emptied:
        console.print(f"The local inbox was emptied ({emptied} messages from an earlier run).")
    referral = Referral(
        jurisdiction="scotland" if scotland else "england-and-wales", site="demo",
        first_entry_to_care=True,
        pathway=profile,
        child={"given_name": "Demo", "family_name": "Child", "date_of_birth": "2025-06-01"},
        care_entry=date(2026, 1, 5), referral=date(2026, 1, 12),
        la_referral=date(2025, 12, 15),
        proceedings_issued=None if scotland else date(2026, 1, 8),
        caregivers=[{"relationship": "mother"}, {"relationship": "father"},
                    {"relationship": "foster-carer"}],
        placement={"kind": "foster", "start": "2026-01-05"},
    )
    ref = svc.cases.open_case(referral, "coord.ali").ref
    console.print(f"[bold]Opened {ref}[/] ({profile}); the virtual clock starts "
                  f"{today(clock)}")
    decisions = {"d1": "no_treatment" if no_treatment else "treatment", "d2": "adoption"}
    with demo_delivery(svc, console) as deliver:
        delivered = deliver()  # the triage handoff, as the case opens
        delivered += _work_the_case(svc, clock, ref, scotland, decisions, deliver)
    show = read.show(ref)
    table = Table(title=f"{ref} timeline ({profile})")
    for col in ("date", "event", "due", "status", "role"):
        table.add_column(col)
    for row in read.timeline(ref):
        if row.role in ("iro", "la-social-worker", "reviewing-officer"):
            continue  # statutory series: shown by `nim-pathway case timeline`
        table.add_row(*(str(getattr(row, c) or "") for c in ("date", "event", "due", "status",
                                                             "role")))
    console.print(table)
    clocks = Table(title="Statutory clocks")
    for col in ("clock", "due", "state"):
        clocks.add_column(col)
    for c in show.clocks:
        clocks.add_row(c.title, str(c.due or ""), c.state)
    console.print(clocks)
    console.print(f"Decisions: {show.decisions}; closed on {show.closed_on}. "
                  f"Database: {db}")
    if delivered:
        console.print(f"{delivered} messages went to the local inbox, each at its step's "
                      "virtual time: `nim-pathway inbox psy.chen` reads one practitioner's.")
    if not scotland:
        _family_events(svc, clock, console)


def _family_events(svc: Service, clock: VirtualClock, console: Console) -> None:
    """Real families differ from one child entering care once: twins in a kinship placement,
    a sibling born during proceedings with their own application, a court direction for NIM's
    final report, a special guardianship order for one twin; and a family whose proceedings
    are withdrawn. Each child's dates come from their own events."""
    clock.set(datetime(2026, 1, 12, 9, 0, tzinfo=UK))
    twins = [{"given_name": "Demo", "family_name": "Twin", "date_of_birth": "2025-09-01"},
             {"given_name": "Demo", "family_name": "Twin-Two", "date_of_birth": "2025-09-01"}]
    ref = svc.cases.open_case(Referral(
        jurisdiction="england-and-wales", site="demo", children=twins,
        care_entry=date(2026, 1, 5), referral=date(2026, 1, 12),
        proceedings_issued=date(2026, 1, 8), caregivers=[{"relationship": "mother"},
                                                         {"relationship": "kinship-carer"}],
        placement={"kind": "kinship", "start": "2026-01-05"}), "coord.ali").ref
    withdrawn = svc.cases.open_case(Referral(
        jurisdiction="england-and-wales", site="demo", care_entry=date(2026, 1, 5),
        child={"given_name": "Demo", "family_name": "Withdrawn", "date_of_birth": "2025-05-01"},
        referral=date(2026, 1, 12), proceedings_issued=date(2026, 1, 8),
        caregivers=[{"relationship": "mother"}, {"relationship": "foster-carer"}]),
        "coord.ali").ref
    clock.set(datetime(2026, 3, 2, 10, tzinfo=UK))
    from models.schemas import ChildIn

    svc.family.add_child(ref, ChildIn(given_name="Demo", family_name="Newborn",
                                      date_of_birth=date(2026, 2, 20),
                                      looked_after_from=date(2026, 2, 23),
                                      proceedings_issued=date(2026, 2, 25)), "coord.ali")
    svc.cases.move_date(ref, "cmh_held@child-3", date(2026, 3, 11), "case management hearing "
                        "held (child-3's application)", "coord.ali")
    svc.court.add_direction(ref, "final-report", "psychologist", date(2026, 6, 30), "coord.ali")
    svc.cases.exit_case(withdrawn, "proceedings-withdrawn", "", "coord.ali")
    clock.set(datetime(2026, 6, 15, 10, tzinfo=UK))
    svc.court.record_final_order(ref, date(2026, 6, 12), "special-guardianship-order", False,
                                 "coord.ali", child="child-2")
    shown = svc.queries.show(ref)
    table = Table(title=f"{ref}: each child's own timeline (virtual {today(clock)})")
    for col in ("child", "looked after", "first review due", "own clocks"):
        table.add_column(col)
    reviews = {t.child or "child-1": t.due for t in sorted(
        svc.queries.tasks(case=ref, state=None), key=lambda t: t.due, reverse=True)
        if t.spec_id == "lac-review"}
    for child in shown.children:
        own = [f"{c.title}: {c.due} ({c.state})" for c in shown.clocks if c.child == child.key]
        table.add_row(child.key, "yes" if child.looked_after else "no (order made)",
                      str(reviews.get(child.key, "")), "; ".join(own) or "the family's")
    console.print(table)
    gone = {c.id: c.state for c in svc.queries.show(withdrawn).clocks}
    console.print(f"{withdrawn}: proceedings withdrawn; its 26 weeks: "
                  f"{gone['care-proceedings-26-weeks']}")


def _work_the_case(svc: Service, clock: VirtualClock, ref: str, scotland: bool,
                   decisions: dict[str, str], deliver: Callable[[], int]) -> int:
    """Do each task as it falls due until the case closes, delivering the messages each step
    queues (at the step's virtual time); how many were delivered."""
    read = svc.queries
    delivered = 0
    handle_for = {role: handle for handle, _, role, _ in DEMO_TEAM}
    moved = False
    for _ in range(400):
        tasks = read.tasks(case=ref)
        if not tasks:
            break
        task = min(tasks, key=lambda t: (t.stage == "statutory", t.due))
        if task.stage == "statutory" and read.show(ref).closed_on:
            break
        due = task.due
        # work is done on the due date, a little late now and then, as in life
        late = 2 if task.key in ("wmci-father", "court-update-2") else 0
        clock.set(datetime.combine(due + timedelta(days=late), datetime.min.time(), UK)
                  .replace(hour=10))
        for statutory in [t for t in tasks if t.stage == "statutory" and t.due <= due]:
            svc.tasks.complete_task(statutory.task, handle_for[statutory.role], {})
        outcome = sample_outcome(read.pathway(ref), task.spec_id, decisions)
        svc.tasks.complete_task(task.task, handle_for[task.role], outcome)
        if not scotland:
            _court_events(svc, ref, today(clock))
        if not moved and task.spec_id == "treatment-plan":
            svc.cases.move_date(ref, "final_hearing", today(clock) + timedelta(weeks=20),
                                "final hearing listed", "coord.ali")
            svc.cases.move_date(ref, "final_hearing", today(clock) + timedelta(weeks=26),
                                "hearing adjourned by the court", "coord.ali")
            moved = True
        delivered += deliver()
    return delivered


def _court_events(svc: Service, ref: str, on: date) -> None:
    """The court's side of the demo: the case management hearing is held in its window, the
    court extends its timetable 8 weeks at a time while NIM's trial of treatment runs (as
    LIFT's judges did, S8), and the final order is made at the final hearing."""
    shown = svc.queries.show(ref)
    clocks = {c.id: c for c in shown.clocks}
    cmh = clocks["case-management-hearing"]
    if cmh.met_on is None and cmh.earliest and on >= cmh.earliest:
        svc.cases.move_date(ref, "cmh_held", cmh.earliest, "case management hearing held",
                            "coord.ali")
    hearing = shown.dates.get("final_hearing")
    if shown.court.final_order is None and hearing and on >= hearing:
        svc.court.record_final_order(ref, hearing, "placement-order", True, "coord.ali")
        return
    limit = clocks["care-proceedings-26-weeks"]
    if shown.court.final_order is None and limit.state == "running" and limit.days_left <= 35:
        svc.court.extend_timetable(ref, on, 8, "necessary to resolve the proceedings justly: "
                                   "NIM's trial of treatment is under way", "coord.ali")


def run_live_demo(settings: Settings) -> None:
    """Bring up the local stack and leave a demo case with work waiting for people."""
    from nim_pathway.stack import LocalStack
    from orchestration.sync import orchestrate_after

    console = Console(width=max(Console().width, 120))
    console.print("[bold]Starting the local stack[/] (Prefect server, work pool, deployments, "
                  "worker)…")
    stack = LocalStack(settings)
    url = stack.up()
    # the stack's Prefect, named explicitly: nothing writes the process environment
    svc = build_service(settings=Settings.from_env(
        {**settings.env, "PREFECT_API_URL": stack.env()["PREFECT_API_URL"]}))
    seed_team(svc, settings.inbox_ports[0])
    read = svc.queries
    on = today(svc.clock)
    referral = Referral(  # each live demo is a new episode of the same fictional child
        jurisdiction="england-and-wales", site="demo", pathway="england", new_episode=True,
        child={"given_name": "Demo", "family_name": "Child",
               "date_of_birth": on - timedelta(days=240)},
        care_entry=on - timedelta(days=21), referral=on - timedelta(days=7),
        proceedings_issued=on - timedelta(days=18),
        caregivers=[{"relationship": "mother"}, {"relationship": "foster-carer"}],
        placement={"kind": "foster", "start": on - timedelta(days=21)},
    )
    ref = svc.cases.open_case(referral, "coord.ali").ref
    svc.tasks.complete_task(TaskRef(ref, "triage"), "mgr.okafor", {"accepted": True})
    for carer in ("mother", "foster-carer"):
        svc.tasks.complete_task(TaskRef(ref, f"consent-{carer}"), "sw.jones", {"consent": "given"})
    console.print(orchestrate_after(svc, ref))
    from prefect.deployments import run_deployment

    run_deployment("sweep/sweep", timeout=0)  # publishes the board, KPIs and timelines now
    second = Referral.model_validate({**referral.model_dump(), "caregivers": [
        {"relationship": "mother"}, {"relationship": "father"}]})
    handle = svc.cases.stage_intake(second, "coord.ali")
    from orchestration.reconcile import OVERDUE_VIEW, view_link

    shown = read.show(ref)  # the count `case show` gives: open and blocked work, every stage
    blocked = sum(t.state == "blocked" for t in shown.open_tasks)
    here = [t for t in read.tasks(case=ref) if t.stage == "assessment"]
    console.print(f"\n[bold]{ref}[/] is in its assessment stage; {len(shown.open_tasks)} tasks "
                  f"wait for people (`nim-pathway case show {ref}` lists the same), "
                  f"{len(here)} of them this stage's; each open one waits as a Suspended flow "
                  f"run" + (f" ({blocked} blocked until earlier work is done)" if blocked else "")
                  + ".\n")
    console.print(f"Prefect UI: [bold]{url}[/] (Prefect 3.9 opens its new UI, under /v2: "
                  "every link here and in messages is to it)\n")
    console.print("What to click:")
    wmci = next(t for t in here if t.key == "wmci-mother")
    console.print(f"  1. A view of waiting work, soonest due first (each run lists under its "
                  f"due day; \"late\" only when overdue): this case "
                  f"{view_link(url, f'case:{ref}')}, psy.chen's queue "
                  f"{view_link(url, 'assignee:psy.chen')}, overdue work "
                  f"({OVERDUE_VIEW}) {view_link(url, 'overdue')}. All views: Artifacts → "
                  "run-views.")
    console.print(f"  2. Open 'due {wmci.due} · {ref} · assessment · wmci-mother' → ⋮ → Resume → "
                  "completed_by [bold]psy.chen[/], classification, code (required) → Resume. "
                  "The case store records it and the run completes.")
    console.print("     The code: a person reads it from their authenticator app, enrolled from "
                  "the QR code `practitioner add` showed them. The demo team's phones are "
                  "simulated: [bold]nim-pathway demo --code-for psy.chen[/] prints psy.chen's "
                  "code now (demo site only).")
    console.print("     Try a wrong code first: Prefect says \"resumed\", but nothing is saved "
                  "and ⋮ → Resume shows the form again, first line: the code was wrong; five "
                  "in a row slow the account down.")
    console.print(f"  3. Deployments → open-case → Run → Custom run → intake [bold]{handle}[/], "
                  "coordinator [bold]coord.ali[/] and coord.ali's code: opens a second case "
                  "without identity entering Prefect.")
    console.print("  4. Artifacts: caseload-board, nim-kpis, breach-report, run-views, "
                  f"timeline-{ref.lower()} and the pathway diagram (refreshed by every sweep).")
    console.print(f"  From the CLI: nim-pathway login --as psy.chen --code $(nim-pathway demo "
                  f"--code-for psy.chen); nim-pathway task list --case {ref}; nim-pathway task "
                  f"complete {ref}/crowell-mother --as psy.chen --field quality=adaptive")
    console.print(f"Messages (reminders, handoffs, dead-letter alerts) go to the local inbox: "
                  f"[bold]http://127.0.0.1:{settings.inbox_ports[1]}/psy.chen[/] (a page per "
                  "practitioner; /admin for alerts), or `nim-pathway inbox psy.chen`.")
    console.print("Stop the stack with: nim-pathway down")

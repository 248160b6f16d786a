"""The chaos soak (`make soak`, issue 30): the whole stack under faults equals the pure engine.

`python -m bench.soak [--cases N] [--months M] [--seed S] [--fault-every D] [--write-results]`

A cohort's script (bench/soak_script.py, from models/simulate.py) is played day by day on a
shared virtual clock through the real service commands on PostgreSQL. Each virtual day: at
09:30 the sweep fires due timers and two dispatcher processes deliver the outbox to a local
HTTP receiver; at 12:00 the day's actions run; from 12:30 the dispatchers deliver what they
queued. The dispatchers read their own clock file, moved by the driver only in the delivery
phases, so what they see is the same in every run. A seeded fault injector (the seed and each
fault printed) kills dispatchers with SIGKILL (at a fault point or at any moment) and starts
them again, makes the receiver refuse (HTTP 500) for a while, kills a command or a sweep
mid-transaction in a child process (NIM_FAULT) and retries it, and sends two managers at the
same task at once.

The check at the end: every case equals what the pure engine gives for the same script with
no store and no faults; the messages delivered equal those a fault-free run of the same
script through the commands on SQLite with one in-process dispatcher delivers (by outbox key
and `ref:` footer); the audit chain verifies; no sentinel identity in any message or log. A
failure prints the seed and the first differing case: `make soak SEED=...` replays it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import date, datetime, timedelta
from datetime import time as dtime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from bench.common import PY, ROOT, clean_env, free_port, throwaway_pg
from bench.soak_procs import MANAGER, SECOND_MANAGER, execute
from bench.soak_report import compare, write_results
from bench.soak_script import SENTINEL, START, build, snapshot, specs
from notifications import IDEMPOTENCY_HEADER
from notifications.inbox import serve_http, stop_http

REF = re.compile(r"ref: (\S+)")
FAULT_KINDS = ("dispatcher-kill", "dispatcher-fault-point", "receiver-refuses",
               "command-killed", "sweep-killed", "race")


class Receiver:
    """The notification target: Apprise `json://` posts, kept with their `ref:` key; it can
    be told to refuse (HTTP 500) the next `n` posts. Like the local inbox it keeps the first
    post of each Idempotency-Key and answers a repeat (a send after a kill mid-send) without
    keeping it: those are counted apart, each to be explained by an outbox reclaim."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[tuple[str, str, str]] = []  # (path, key, text)
        self.absorbed: list[tuple[str, str]] = []  # (path, key) of repeats not kept
        self.seen: set[str] = set()
        self.refuse = 0
        self.refused = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                text = f"{body.get('title', '')}\n{body.get('message', '')}"
                found = REF.search(text)
                with receiver.lock:
                    refuse = receiver.refuse > 0
                    if refuse:
                        receiver.refuse -= 1
                        receiver.refused += 1
                    elif (key := self.headers.get(IDEMPOTENCY_HEADER)) in receiver.seen:
                        receiver.absorbed.append((self.path, found.group(1) if found else "?"))
                    else:
                        if key:
                            receiver.seen.add(key)
                        receiver.got.append((self.path, found.group(1) if found else "?", text))
                self.send_response(500 if refuse else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = serve_http(Handler, self.port)

    def url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def stop(self) -> None:
        stop_http(self.server)


def uk(day: date, hour: int, minute: int = 0) -> datetime:
    from models.clock import UK

    return datetime.combine(day, dtime(hour, minute), UK)


class Run:
    """One play of the script on one store: `chaos` (PostgreSQL, two dispatcher processes,
    the fault injector) or the fault-free control (SQLite, one in-process dispatcher)."""

    def __init__(self, folder: Path, url: str, chaos: bool, seed: int, fault_every: int,
                 log: Any) -> None:  # noqa: ANN401 - a text stream
        from models.clock import FileClock

        self.folder, self.url, self.chaos, self.log = folder, url, chaos, log
        folder.mkdir(parents=True, exist_ok=True)
        self.rng = random.Random(seed)
        self.fault_every = fault_every
        self.faults: Counter[str] = Counter()
        self.receiver = Receiver()
        self.clock = FileClock(str(folder / "clock"))
        self.dclock = FileClock(str(folder / "dispatch-clock"))  # the dispatchers' own
        self.clock.set(uk(START, 9))
        self.dclock.set(uk(START, 9))
        config = folder / "notify.yaml"
        self.env = clean_env(NIM_DATABASE_URL=url, NIM_DATA_DIR=str(folder / "data"),
                             NIM_CLOCK_FILE=str(folder / "clock"), NIM_NOTIFY_CONFIG=str(config),
                             NIM_ADMIN_TARGETS=self.receiver.url("admin"))
        os.environ.update({k: v for k, v in self.env.items() if k.startswith("NIM_")})
        os.environ.pop("NIM_FAULT", None)
        from models.schemas import PractitionerIn
        from nim_pathway.app import build_service
        from nim_pathway.demo import DEMO_ADMIN, DEMO_TEAM, seed_team

        roles = sorted({role for _, _, role, _ in DEMO_TEAM})
        import yaml

        config.write_text(yaml.safe_dump({
            "channels": {f"team-{r}": self.receiver.url(f"team-{r}") for r in roles},
            "roles": {r: [f"team-{r}"] for r in roles},
            "targets": {"hook": self.receiver.url("staff/{to}")}}))
        config.chmod(0o600)
        self.svc = build_service(url, self.clock, closures=frozenset())
        seed_team(self.svc)
        self.svc.admin.add_practitioner(PractitionerIn(
            handle=SECOND_MANAGER, display_name="M2", role="nim-service-manager", team="nim"),
            DEMO_ADMIN.handle)
        for p in self.svc.queries.practitioners():
            if p.handle.startswith("svc."):  # the service identity has no contact
                continue
            self.svc.admin.update_practitioner(p.handle, DEMO_ADMIN.handle,
                                               contact=f"hook:{p.handle}")
        self.dispatchers: list[subprocess.Popen | None] = [None, None]
        self.killed_in_phase = False
        if chaos:
            for n in range(2):
                self.start_dispatcher(n)
        else:
            self.inproc = self.svc.dispatcher(self.dclock)
        self.refs: dict[int, str] = {}
        self.prefect: Any = None  # bench.soak_prefect.PrefectChaos, with --prefect
        self.events = 0
        self.races = Counter[str]()

    # -- processes ----------------------------------------------------------------------

    def child_env(self, **extra: str) -> dict[str, str]:
        return {**self.env, **extra}

    def start_dispatcher(self, n: int, fault: str | None = None) -> None:
        env = self.child_env(NIM_CLOCK_FILE=str(self.folder / "dispatch-clock"))
        if fault:
            env["NIM_FAULT"] = fault
        with open(self.folder / f"dispatcher-{n}.log", "ab") as out:
            proc = subprocess.Popen([PY, "-m", "bench.soak_procs", "dispatch"], cwd=ROOT,
                                    env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.dispatchers[n] = proc

    def stop(self) -> None:
        for proc in self.dispatchers:
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self.receiver.stop()

    def child(self, what: str, args: dict[str, Any], fault: str) -> int:
        """A command or sweep in a child process armed to kill itself at `fault`."""
        with open(self.folder / "children.log", "ab") as out:
            return subprocess.run([PY, "-m", "bench.soak_procs", what, json.dumps(args)],
                                  cwd=ROOT, env=self.child_env(NIM_FAULT=fault), stdout=out,
                                  stderr=subprocess.STDOUT, timeout=300,
                                  start_new_session=True).returncode

    def fault(self, day: date, kind: str, detail: str) -> None:
        self.faults[kind] += 1
        print(f"fault {day} {kind}: {detail}", file=self.log, flush=True)

    # -- delivery -----------------------------------------------------------------------

    def pending(self) -> tuple[int, datetime | None, datetime | None]:
        """Messages still to deliver; the earliest retry among those nobody holds; the
        earliest lease end among those held."""
        from sqlalchemy import text

        from store.db import get_engine

        now = self.dclock.now()
        with get_engine(self.url).connect() as conn:
            rows = conn.execute(text("SELECT next_attempt_at, claimed_until FROM outbox "
                                     "WHERE status = 'pending'")).all()
        def aware(v: Any) -> datetime | None:  # noqa: ANN401 - a driver's datetime
            if v is None:
                return None
            return v if v.tzinfo else v.replace(tzinfo=now.tzinfo or None)
        free = [aware(a) for a, c in rows if c is None or aware(c) < now]
        held = [aware(c) for _, c in rows if c is not None and aware(c) >= now]
        return len(rows), min(free, default=None), min(held, default=None)

    def deliver(self, at: datetime, day: date) -> None:
        """Deliver until nothing is pending, the dispatchers' clock starting at `at` and moved
        on only to a retry's time, or past a dead dispatcher's lease."""
        self.dclock.set(at)
        if not self.chaos:
            while True:
                r = self.inproc.run_until_idle(limit=200)
                count, free, _ = self.pending()
                if not count:
                    return
                if free is None or r.sent + r.failed == 0 and free <= self.dclock.now():
                    raise RuntimeError(f"{day}: the control run's outbox does not drain")
                self.dclock.set(max(free, self.dclock.now()))
        deadline, quiet_since, last = time.monotonic() + 180, time.monotonic(), None
        while True:
            for n, proc in enumerate(self.dispatchers):
                if proc is not None and proc.poll() is not None:
                    print(f"restart {day} dispatcher {n} (exit {proc.returncode})",
                          file=self.log, flush=True)
                    self.killed_in_phase = True
                    self.start_dispatcher(n)
            count, free, held = self.pending()
            if not count:
                self.killed_in_phase = False
                return
            now = self.dclock.now()
            if (count, free, held) != last:
                last, quiet_since = (count, free, held), time.monotonic()
            if free is not None and free > now and held is None:
                self.dclock.set(free)  # a refused message's retry is due then
            elif free is None and held is not None and self.killed_in_phase and \
                    time.monotonic() - quiet_since > 2:
                self.dclock.set(held + timedelta(seconds=1))  # a killed holder's lease ends
            if time.monotonic() > deadline:
                raise RuntimeError(f"{day}: {count} messages still pending after 180 s")
            time.sleep(0.02)

    # -- the day ------------------------------------------------------------------------

    def play(self, script: list[list[dict[str, Any]]]) -> None:
        next_fault = self.fault_every
        for d, actions in enumerate(script):
            day = START + timedelta(days=d)
            kind = None
            if self.chaos and d >= next_fault:
                kind = self.rng.choice(FAULT_KINDS + (("prefect-killed",) if self.prefect
                                                      else ()))
                if kind in ("command-killed", "race") and not any(
                        a["kind"] == "complete" for a in actions):
                    kind = "dispatcher-kill"
                next_fault = d + self.rng.randint(1, 2 * self.fault_every - 1)
            self.clock.set(uk(day, 9, 30))
            if self.prefect is not None:
                for what in self.prefect.keep_alive():
                    print(f"restart {day} {what}", file=self.log, flush=True)
                if kind == "prefect-killed":
                    self.fault(day, *self.prefect.fault(self.rng))
            if kind == "sweep-killed":
                k = self.rng.randint(1, 3)
                rc = self.child("sweep", {"batch": 2}, f"sweep-timer:{k}")
                if rc == -signal.SIGKILL:
                    self.fault(day, kind, f"sweep in a child killed at sweep-timer:{k} "
                               "(mid-batch, uncommitted), then swept again")
                else:  # fewer timers were due: the sweep in the child did the day's work
                    self.fault(day, "sweep-fault-not-reached", f"sweep-timer:{k} armed, "
                               f"fewer timers due (exit {rc})")
            self.svc.timers.fire_due_timers()
            if kind == "receiver-refuses":
                n = self.rng.randint(1, 4)
                self.receiver.refuse = n
                self.fault(day, kind, f"the receiver answers 500 to the next {n} posts")
            if kind in ("dispatcher-kill", "dispatcher-fault-point"):
                self.kill_dispatcher(day, kind)
            self.deliver(uk(day, 9, 30), day)
            self.clock.set(uk(day, 12))
            self.dclock.set(uk(day, 11, 59))
            chosen = self.rng.choice([n for n, a in enumerate(actions)
                                      if a["kind"] == "complete"]) \
                if kind in ("command-killed", "race") else None
            for n, action in enumerate(actions):
                i = action["i"]
                if n == chosen and kind == "race":
                    self.race(day, action)
                elif n == chosen:
                    rc = self.child("command", {"action": action, "ref": self.refs.get(i)},
                                    "command-commit:1")
                    self.fault(day, kind, f"complete {action['task']} on case #{i} killed "
                               f"before its commit in a child (exit {rc}), then retried")
                    execute(self.svc, action, self.refs.get(i))
                else:
                    self.refs[i] = execute(self.svc, action, self.refs.get(i))
                self.events += 1
            self.deliver(uk(day, 12, 30), day)

    def kill_dispatcher(self, day: date, kind: str) -> None:
        n = self.rng.randrange(2)
        proc = self.dispatchers[n]
        if kind == "dispatcher-fault-point":
            point = self.rng.choice(("dispatch-claimed", "dispatch-sent"))
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            self.start_dispatcher(n, f"{point}:1")
            self.killed_in_phase = True
            self.fault(day, kind, f"dispatcher {n} restarted armed to die at {point}")
            return
        delay = self.rng.uniform(0, 0.3)

        def later() -> None:
            time.sleep(delay)  # a kill -9 at an unplanned moment of the delivery phase
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)

        threading.Thread(target=later, daemon=True).start()
        self.killed_in_phase = True
        self.fault(day, kind, f"dispatcher {n} kill -9 {delay:.2f} s into delivery")

    def race(self, day: date, action: dict[str, Any]) -> None:
        """Two managers complete the same task at once: one wins, the other is told."""
        from models.errors import AlreadyDone

        barrier, said = threading.Barrier(2), {}

        def complete(actor: str) -> None:
            barrier.wait()
            try:
                execute(self.svc, action, self.refs[action["i"]], actor)
                said[actor] = "ok"
            except AlreadyDone as exc:
                said[actor] = str(exc)

        threads = [threading.Thread(target=complete, args=(a,)) for a in (MANAGER, SECOND_MANAGER)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        outcome = sorted(said.values())
        ok = len(outcome) == 2 and outcome[0] == "ok" and "already completed" in outcome[1]
        self.races["clear" if ok else "unclear"] += 1
        self.fault(day, "race", f"two managers at {action['task']} of case #{action['i']}: "
                   f"{outcome}")
        if not ok:
            raise RuntimeError(f"{day}: the race did not end in one win and one refusal: {said}")

    # -- what it left -------------------------------------------------------------------

    def summary(self, on: date) -> dict[str, Any]:
        """What the check needs of this run, JSON-safe: each case's snapshot, the messages
        received (path, key, whether a sentinel identity was in it), the outbox's status and
        reclaims by key, the audit chain's problems, the logs that hold a sentinel, faults."""
        from sqlalchemy import text

        from store import mapping
        from store.db import get_engine

        all_specs = {s.jurisdictions[0]: s for s in specs().values()}
        cases = {}
        with self.svc.ctx.read() as session:
            for i, ref in self.refs.items():
                case = mapping.find_case(session, ref)
                spec = self.svc.ctx.spec(session, case.pathway_id)
                state = mapping.load_state(session, case, spec, frozenset())
                cases[str(i)] = snapshot(all_specs.get(case.jurisdiction, spec), state, on)
        with get_engine(self.url).connect() as conn:
            outbox = {r[0]: [r[1], r[2]] for r in conn.execute(text(
                "SELECT dedupe_key, status, reclaimed FROM outbox"))}
        return json.loads(json.dumps({
            "refs": {str(i): ref for i, ref in self.refs.items()}, "cases": cases,
            "got": [[p, k, SENTINEL in t] for p, k, t in self.receiver.got],
            "absorbed": [[p, k] for p, k in self.receiver.absorbed],
            "outbox": outbox, "audit": self.svc.queries.verify_audit(),
            "log_hits": [str(p.name) for p in self.folder.rglob("*.log")
                         if SENTINEL in p.read_text(errors="replace")],
            "faults": dict(sorted(self.faults.items())), "refused": self.receiver.refused,
        }, default=str))


def play_half(half: str, tmp: Path, pg: str | None, script: list[list[dict[str, Any]]],
              seed: int, days: int, args: argparse.Namespace) -> dict[str, Any]:
    """Play one half (the fault-free control on SQLite, or the chaos run on PostgreSQL) and
    return its summary."""
    t0, run = time.perf_counter(), None
    try:
        if half == "control":
            run = Run(tmp / "control", f"sqlite:///{tmp}/control.db", False, seed,
                      args.fault_every, sys.stdout)
        else:
            run = Run(tmp / "chaos", pg or "", True, seed, args.fault_every, sys.stdout)
            if args.prefect:
                from bench.soak_prefect import PrefectChaos

                run.prefect = PrefectChaos(tmp / "chaos" / "prefect", run.env)
        run.play(script)
        run.stop()
        out = run.summary(START + timedelta(days=days))
        if run.prefect is not None:
            from nim_pathway.app import build_service

            out["reconcile"] = run.prefect.finish(lambda: build_service(
                run.url, run.clock, closures=frozenset(), migrate=False))
    finally:
        if run is not None:
            run.stop()
            if run.prefect is not None:
                run.prefect.stop()
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak")
    p.add_argument("--cases", type=int, default=200)
    p.add_argument("--months", type=int, default=18)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--fault-every", type=int, default=3, help="virtual days between faults")
    p.add_argument("--write-results", action="store_true")
    p.add_argument("--prefect", action="store_true", help="with a Prefect server, worker and "
                   "sync service under kill -9 too, and reconcile at the end")
    p.add_argument("--workdir", help="a folder of the caller's own for the run's files "
                   "(default: a temporary folder, removed afterwards)")
    p.add_argument("--parallel", action="store_true",
                   help="play the control half in a second process at the same time")
    p.add_argument("--half", choices=("control", "chaos"), help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)  # with --half: its summary, as JSON
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # cleaned up: databases, folders
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**6)
    days = round(args.months * 30.44)
    print(f"soak seed {seed}: {args.cases} cases, {args.months} months ({days} days), "
          f"a fault every ~{args.fault_every} days; replay: make soak SEED={seed} "
          f"CASES={args.cases} MONTHS={args.months}", flush=True)
    t0 = time.perf_counter()
    script, reference = build(args.cases, days, seed)
    halves = [args.half] if args.half else ["chaos"] if args.parallel else ["control", "chaos"]
    got: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        tmp = Path(args.workdir or stack.enter_context(
            tempfile.TemporaryDirectory(prefix="nim-soak-")))
        helper = None
        if args.parallel and not args.half:
            helper = subprocess.Popen([PY, "-m", "bench.soak", *(argv or sys.argv[1:]),
                                       "--seed", str(seed), "--half", "control",
                                       "--save", str(tmp / "control.json"),
                                       "--workdir", str(tmp)], cwd=ROOT,
                                      start_new_session=True)
            stack.callback(lambda: helper.poll() is None and os.killpg(helper.pid, signal.SIGKILL))
        pg = stack.enter_context(throwaway_pg("nim_soak")) if "chaos" in halves else None
        for half in halves:
            got[half] = play_half(half, tmp, pg, script, seed, days, args)
        if pg:
            from store.db import get_engine

            get_engine(pg).dispose()
        if helper is not None:
            if helper.wait() != 0:
                raise RuntimeError(f"the control half failed (exit {helper.returncode})")
            got["control"] = json.loads((tmp / "control.json").read_text())
    if args.half:
        Path(args.save).write_text(json.dumps(got[args.half]))
        return 0
    result = compare(script, reference, got["control"], got["chaos"],
                     START + timedelta(days=days))
    result.update(seed=seed, cases=args.cases, months=args.months, days=days,
                  faults=got["chaos"]["faults"], wall_s=round(time.perf_counter() - t0, 1),
                  chaos_s=got["chaos"]["wall_s"], control_s=got["control"]["wall_s"])
    for line in result["differences"][:20]:
        print(f"DIFFERENCE (seed {seed}): {line}")
    print(f"soak seed {seed}: {args.cases} cases, {days} days, {result['events']} events, "
          f"faults {result['faults']}, {result['messages']} messages delivered "
          f"({result['repeats_after_kill']} shown twice; {result['absorbed_repeats']} sent again "
          f"after a kill mid-send, kept once by the receiver's Idempotency-Key), "
          f"{len(result['differences'])} differences, {result['wall_s']} s")
    if args.write_results:
        write_results(result, args.prefect)
    print(json.dumps({k: v for k, v in result.items() if k != "differences"}
                     | {"differences": len(result["differences"])}))
    return 1 if result["differences"] else 0


if __name__ == "__main__":
    sys.exit(main())

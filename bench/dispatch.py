"""Figure 4: two dispatchers on PostgreSQL racing over one outbox, to a local HTTP receiver.

The outbox is filled by the case store's own sweep (2,000 due timers of a synthetic cohort,
every practitioner and role channel pointing at the receiver), so the rows are whatever the
sweep writes. The receiver (a threaded `http.server` in this process) counts each message by
the `ref: <dedupe_key>` footer of its body, so a message delivered twice is seen twice. The
two dispatchers are separate processes that import everything first and start on one signal.
Baseline: a plain Apprise send loop of the same messages (the text the dispatchers sent) to
the same receiver. Both are timed best of N (duplicates: the worst run).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from bench.common import (
    PY,
    ROOT,
    Row,
    clean_env,
    free_port,
    run_worker,
    throwaway_pg,
    worker_main,
)
from notifications.inbox import serve_http, stop_http

AT = datetime(2027, 3, 8, 9, 5, tzinfo=UTC)
REF = re.compile(r"ref: (\S+)")


class Receiver:
    """Apprise `json://` endpoint that counts messages by their dedupe key."""

    def __init__(self) -> None:
        self.port = free_port()
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                found = REF.search(body.get("message", ""))
                with receiver.lock:
                    receiver.seen[found.group(1) if found else "?"] += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = serve_http(Handler, self.port)

    def url(self, handle: str) -> str:
        return f"json://127.0.0.1:{self.port}/hook/{handle}"

    def received(self) -> int:
        with self.lock:
            return sum(self.seen.values())

    def wait_for(self, n: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while self.received() < n and time.monotonic() < deadline:
            time.sleep(0.01)

    def reset(self) -> None:
        with self.lock:
            self.seen.clear()

    def stop(self) -> None:
        stop_http(self.server)


def fill_outbox(ctx: Any, url: str, receiver: Receiver, messages: int) -> dict[str, str]:
    """The outbox as a sweep leaves it: `messages` due timers fired by the case store, every
    practitioner and role channel pointing at the receiver. Returns the workers' environment."""
    from bench.cohort import Cohort, notify_config, populate
    from bench.sweep import WINDOW_END

    cohort = Cohort(messages // 18 + 1, WINDOW_END, all_due=True, max_timers=messages,  # 18-20 each
                    contact=receiver.url("staff"), digest_every=0)
    populate(url, ctx.templates(), cohort)
    config = notify_config(ctx.tmp / "notify-receiver.yaml", ctx.templates().roles,
                           f"json://127.0.0.1:{receiver.port}/hook")
    env = clean_env(NIM_NOTIFY_CONFIG=str(config))
    run_worker("bench.sweep", {"url": url, "at": WINDOW_END.isoformat(), "mode": "orm"}, env)
    return env


def dispatcher(args: dict[str, Any]) -> dict[str, Any]:
    """In a worker process: get ready, wait for `go` on stdin, dispatch until idle."""
    import apprise  # noqa: F401 - imported before the start signal: process start-up cost

    from models.clock import VirtualClock
    from nim_pathway.app import build_service

    d = build_service(args["url"], VirtualClock(AT), migrate=False).dispatcher()  # NIM_NOTIFY_CONFIG
    d._contacts_and_links([])  # connect to the database before the start signal
    print("ready", flush=True)
    sys.stdin.readline()
    t0 = time.perf_counter()
    report = d.run_until_idle(limit=args["limit"])
    return {"sent": report.sent, "failed": report.failed, "reclaimed": report.reclaimed,
            "errors": report.errors[:3], "seconds": time.perf_counter() - t0}


def plain_loop(args: dict[str, Any]) -> dict[str, Any]:
    """Baseline in a worker process: one Apprise object per recipient URL, notify each message."""
    import apprise

    messages = json.loads(Path(args["messages"]).read_text())
    apps: dict[str, apprise.Apprise] = {}
    print("ready", flush=True)
    sys.stdin.readline()
    t0, ok = time.perf_counter(), 0
    for m in messages:
        if m["url"] not in apps:
            apps[m["url"]] = apprise.Apprise()
            apps[m["url"]].add(m["url"])
        ok += bool(apps[m["url"]].notify(title=m["subject"], body=m["text"]))
    return {"sent": ok, "seconds": time.perf_counter() - t0}


def _race(workers: list[dict[str, Any]], receiver: Receiver, expected: int,
          env: dict[str, str]) -> tuple[float, list]:
    """Start the workers, wait until all are ready, say go, and time until all are done."""
    procs = [subprocess.Popen([PY, "-m", "bench.dispatch", json.dumps(w, default=str)],
                              cwd=ROOT, env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for w in workers]
    for p in procs:
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError("a dispatch worker did not start")
    t0 = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
    receiver.wait_for(expected, timeout=10)
    return time.perf_counter() - t0, results


def _outbox(url: str, status: str) -> list[tuple[str, str, str]]:
    """(recipient, subject, text) of the outbox rows with `status`."""
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT recipient, subject, body_text FROM outbox WHERE status = %s "
                            "ORDER BY id", (status,)).fetchall()


def figure(ctx: Any) -> list[Row]:
    n, tries = ctx.sizes["dispatch"], ctx.sizes["best_of"]
    receiver = Receiver()
    races, plains = [], []
    try:
        for _ in range(tries):  # best of N, each on a fresh outbox: the machine may be shared
            receiver.reset()
            with throwaway_pg() as url:
                env = fill_outbox(ctx, url, receiver, n)
                queued = len(_outbox(url, "pending"))
                wall, results = _race([{"role": "dispatch", "url": url, "limit": 200}] * 2,
                                      receiver, queued, env)
                sent = _outbox(url, "sent")
                races.append((wall, results, dict(receiver.seen), len(sent), queued))
        if any(not subject for _, subject, _ in sent):
            raise RuntimeError("sent rows do not keep the text that was sent; no baseline")
        plain = ctx.tmp / "plain-messages.json"
        plain.write_text(json.dumps([{"url": receiver.url(who.replace(":", "/")),
                                      "subject": subject, "text": text}
                                     for who, subject, text in sent]))
        for _ in range(tries):
            receiver.reset()
            plains.append(_race([{"role": "plain", "messages": str(plain)}], receiver,
                                len(sent), clean_env()))
    finally:
        receiver.stop()
    duplicates = max(sum(c - 1 for c in seen.values() if c > 1) for _, _, seen, _, _ in races)
    wall, results, seen, sent_in_store, queued = min(races, key=lambda r: r[0])
    base_wall, base = min(plains, key=lambda r: r[0])
    unique = len(seen)
    rate, base_rate = unique / wall, base[0]["sent"] / base_wall
    return [Row(
        figure=f"4. dispatch: 2 dispatchers, {queued:,} messages (PostgreSQL)", value=rate,
        unit="msgs/s", target="≥200 msgs/s, 0 duplicates",
        met=rate >= 200 and duplicates == 0 and unique == queued, baseline=base_rate,
        baseline_label="plain Apprise send loop", ratio=rate / base_rate,
        note=f"{unique:,} of {queued:,} received, {duplicates} duplicates, in {wall:.1f} s",
        details={"seconds": wall, "runs_s": [r[0] for r in races],
                 "baseline_runs_s": [r[0] for r in plains],
                 "received_unique": unique, "duplicates_worst_run": duplicates,
                 "sent_in_store": sent_in_store,
                 "per_dispatcher_sent": [r["sent"] for r in results],
                 "failed": sum(r["failed"] for r in results),
                 "errors": [e for r in results for e in r["errors"]],
                 "baseline_seconds": base_wall, "baseline_sent": base[0]["sent"],
                 "dispatcher_peak_rss_mb": max(r["max_rss_mb"] for r in results)})]


def work(args: dict[str, Any]) -> dict[str, Any]:
    return dispatcher(args) if args["role"] == "dispatch" else plain_loop(args)


if __name__ == "__main__":
    worker_main(work)

"""The ranges of a pathway's settings: where each setting is used, what those uses allow,
and whether the declared range holds the default and fits every use."""

from __future__ import annotations

from typing import TYPE_CHECKING

from models.calendar import MAX_AMOUNT
from models.pathway.constants import MAX_COUNT

if TYPE_CHECKING:
    from models.pathway.spec import PathwaySpec


def range_problems(spec: PathwaySpec, stored: bool) -> list[str]:
    """Every setting has a range that holds its default and fits each of its uses (a
    pathway version stored before ranges existed is held to the uses alone)."""
    problems = []
    for name in spec.setting_ranges:
        if name not in spec.settings:
            problems.append(f"setting_ranges.{name}: no setting {name!r} under 'settings'")
    uses = setting_uses(spec)
    for name, value in spec.settings.items():
        declared = spec.setting_ranges.get(name)
        if declared is None:
            if not stored:
                problems.append(f"settings.{name}: give its range under 'setting_ranges', "
                                f"e.g. {name}: {{min: 1, max: {max(value, 1) * 2}}}")
            continue
        if not declared.min <= value <= declared.max:
            problems.append(f"settings.{name}: {value} is outside its range "
                            f"{declared.min}-{declared.max}")
        for what, lo, hi in dict.fromkeys(uses.get(name, [])):
            if declared.min < lo or declared.max > hi:
                problems.append(f"setting_ranges.{name}: {declared.min}-{declared.max} does "
                                f"not fit its use as {what} ({lo}-{hi})")
    return problems


def setting_uses(spec: PathwaySpec) -> dict[str, list[tuple[str, int, int]]]:
    """Each setting's uses, with the values each allows: an offset amount (up to about
    five years of its unit), a count, or a stage's switch."""
    uses: dict[str, list[tuple[str, int, int]]] = {}
    tasks = [t for s in spec.stages for t in s.tasks] + list(spec.statutory)
    offsets = [o for t in tasks for o in (t.due, t.every, *t.then_every)]
    for clock in spec.clocks:
        offsets += [clock.limit, *clock.warnings]
        if clock.window:
            offsets += [clock.window.earliest, clock.window.latest]
    for off in offsets:
        if off is not None and isinstance(off.raw_amount, str):
            uses.setdefault(off.raw_amount, []).append(
                (off.unit.replace("_", " "), 0, MAX_AMOUNT[off.unit]))
    for task in tasks:
        if isinstance(task.count, str):
            uses.setdefault(task.count, []).append(("a count", 1, MAX_COUNT))
    for stage in spec.stages:
        if stage.when is not None:
            uses.setdefault(stage.when, []).append(("a stage's switch", 0, 1))
    return uses

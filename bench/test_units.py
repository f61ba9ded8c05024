"""How long each pytest-xdist unit of a test run took, and how the workers would share them.

A unit is what one worker runs whole (tests/conftest.py: a heavy module, a test or a test class
of a module in SPLIT, or the "local" unit). From the JUnit XML of a run (``pytest
--junitxml=run.xml``, or ``PYTEST_ADDOPTS=--junitxml=run.xml bash .ci/run``) this prints each
unit's worker-minutes, longest first, ready for ``UNIT_MINUTES`` in tests/conftest.py, and the
minutes the busiest of N workers needs when the units start in the order tests/conftest.py
gives them (each to the first free worker, as pytest-xdist's loadscope scheduling does).

Run: ``python bench/test_units.py run.xml [--workers 3]``.
"""

from __future__ import annotations

import argparse
import heapq
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import HEAVY, UNIT_MINUTES, xdist_unit  # noqa: E402


def nodeid(classname: str, name: str) -> str:
    """pytest's node id from a JUnit test case (``tests.e2e.test_x.TestY`` + ``test_z``)."""
    parts = classname.split(".")
    module = next(i for i, part in enumerate(parts) if part.startswith("test_"))
    return "::".join(["/".join(parts[: module + 1]) + ".py", *parts[module + 1:], name])


def unit_minutes(xml: Path) -> dict[str, float]:
    """Worker-minutes (setup + call + teardown) per unit."""
    minutes: dict[str, float] = {}
    for case in ET.parse(xml).iter("testcase"):  # noqa: S314 - our own test run's XML
        unit = xdist_unit(nodeid(case.get("classname", ""), case.get("name", "")))
        key = "local" if unit == "local" else unit.rsplit("/", 1)[-1].replace(".py", "")
        minutes[key] = minutes.get(key, 0.0) + float(case.get("time", 0)) / 60
    return minutes


def busiest_worker(minutes: dict[str, float], workers: int) -> list[float]:
    """Each worker's minutes when the units start in tests/conftest.py's order."""
    heavy = {name: rank for rank, name in enumerate(HEAVY)}
    order = sorted(minutes, key=lambda unit: (-UNIT_MINUTES.get(unit, 0.0),
                                             heavy.get(unit.split("::")[0], len(heavy)), unit))
    free = [0.0] * workers
    for unit in order:
        heapq.heapreplace(free, free[0] + minutes[unit])
    return sorted(free, reverse=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("xml", type=Path)
    parser.add_argument("--workers", type=int, default=3)
    args = parser.parse_args()
    minutes = unit_minutes(args.xml)
    for unit, took in sorted(minutes.items(), key=lambda item: -item[1]):
        print(f"{took:6.1f}  {unit}")
    total = sum(minutes.values())
    finish = busiest_worker(minutes, args.workers)
    print(f"\n{total:.1f} worker-minutes; {args.workers} workers would end after "
          + ", ".join(f"{m:.1f}" for m in finish) + " min")


if __name__ == "__main__":
    main()

"""The .env store under SIGKILL: 500 writers killed at random moments of their updates.

After every kill the file parses, every variable holds the old or the new value (never a mix,
never empty), the mode is 0600, and the next writer removes any temporary file the killed one
left. The figures are printed (`-s`): kills, updates completed, leftovers cleaned.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.envstore import envfile
from tests.support.project import make_private, private

KILLS = 500
NAMES = [f"VAR_{i}" for i in range(6)]


def _writer(path: str, generation: int) -> None:
    """Keep rewriting every variable to values of this generation and the next, forever."""
    n = generation
    while True:
        n += 1
        envfile.update(Path(path), {name: f"value-{n}-{name}-{'x' * 40}" for name in NAMES})


def _valid(value: str, name: str) -> int:
    """The generation a value belongs to; fails on anything torn or empty."""
    parts = value.split("-")
    assert len(parts) == 4 and parts[0] == "value" and parts[2] == name.split("-")[0], value
    assert parts[3] == "x" * 40, value
    return int(parts[1])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork() to start writers quickly "
                    "(Windows: test_terminated_writers_never_tear_the_file)")
def test_sigkill_during_updates_never_tears_the_file(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("# crash test\n" + "".join(f"{n}=value-0-{n}-{'x' * 40}\n" for n in NAMES))
    path.chmod(0o600)
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(20261129)
    generations = []
    leftovers = 0
    last = 0
    for kill in range(KILLS):
        writer = ctx.Process(target=_writer, args=(str(path), (kill + 1) * 100_000))
        writer.start()
        time.sleep(rng.uniform(0.0, 0.03))
        os.kill(writer.pid, signal.SIGKILL)
        writer.join()
        assert writer.exitcode == -signal.SIGKILL
        leftovers += len(list(tmp_path.glob(".env.*.tmp")))
        doc = envfile.load(path)  # parses, or raises
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"kill {kill}: mode widened"
        assert doc.text().startswith("# crash test\n"), f"kill {kill}: comment lost"
        values = doc.values
        assert sorted(values) == sorted(NAMES), f"kill {kill}: variables lost"
        seen = {_valid(values[name], name) for name in NAMES}
        assert len(seen) == 1, f"kill {kill}: a mix of two writes: {seen}"
        last = seen.pop()
        generations.append(last)
    # the next write cleans whatever a killed writer left behind
    envfile.update(path, {"VAR_0": "value-0-VAR_0-" + "x" * 40})
    assert list(tmp_path.glob(".env.*.tmp")) == []
    updates = len({g for g in generations if g})
    print(f"\n{KILLS} SIGKILLs; file intact after each; {updates} distinct completed writes seen; "
          f"{leftovers} temporary files left by killed writers, all cleaned by the next write")


#: Fewer on Windows: a process start costs seconds under Wine, and one update some 50 ms
TERMINATIONS = 12 if sys.platform == "win32" else 25
#: After the first completed write, the kill comes within this many seconds: at a random moment
#: of the writes that follow (it is not a wait: the first write is waited for, as an event)
KILL_WITHIN = 0.3 if sys.platform == "win32" else 0.05
WRITER = """
import sys
from pathlib import Path
from tasks.envstore import envfile
path, n = Path(sys.argv[1]), int(sys.argv[2])
names = [f"VAR_{i}" for i in range(6)]
while True:
    n += 1
    envfile.update(path, {name: f"value-{n}-{name}-{'x' * 40}" for name in names})
    print(f"wrote {n}", flush=True)
"""


def test_terminated_writers_never_tear_the_file(tmp_path: Path) -> None:
    """The same, with writers started as fresh processes and ended by ``Popen.kill()``:
    TerminateProcess on Windows (which has no SIGKILL), SIGKILL elsewhere. Each writer reports
    every write it completed; it is killed only after the first report, so every kill lands
    among real writes however slow the machine is."""
    path = tmp_path / ".env"
    text = "# crash test\n" + "".join(f"{n}=value-0-{n}-{'x' * 40}\n" for n in NAMES)
    path.write_bytes(text.encode())
    make_private(path)
    rng = random.Random(20261130)
    repo = Path(__file__).resolve().parents[2]
    for kill in range(TERMINATIONS):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str((kill + 1) * 100_000)],
                                  cwd=repo, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        assert writer.stdout is not None
        first = writer.stdout.readline()  # blocks until the writer completed a write (or died)
        assert first.startswith("wrote "), (first, writer.communicate(timeout=60))
        completed = int(first.split()[1])
        time.sleep(rng.uniform(0.0, KILL_WITHIN))
        writer.kill()
        writer.communicate(timeout=60)
        assert writer.returncode != 0
        doc = envfile.load(path)
        assert private(path), f"kill {kill}: no longer private"
        assert doc.text().startswith("# crash test\n"), f"kill {kill}: comment lost"
        assert sorted(doc.values) == sorted(NAMES), f"kill {kill}: variables lost"
        seen = {_valid(doc.values[name], name) for name in NAMES}
        assert len(seen) == 1, f"kill {kill}: a mix of two writes: {seen}"
        assert seen.pop() >= completed, f"kill {kill}: a completed write was lost"
    envfile.update(path, {"VAR_0": "value-0-VAR_0-" + "x" * 40})
    assert list(tmp_path.glob(".env.*.tmp")) == []
    print(f"\n{TERMINATIONS} writers killed with Popen.kill() after their first completed "
          f"write; file intact after each")

"""Time every hostile-input corpus case through ``snap-pc`` (issue 13).

Builds the corpus of ``tests/engine/test_hostile.py`` in a temporary folder, runs
each case in a subprocess limited to 2 GiB and 60 s, and prints a table:
case, seconds, peak RSS of the child (MiB), exit code, the one-line message.
Target: every case under 10 s and 1 GiB, exit 1 with one line.

Usage: ``python benchmarks/bench_hostile.py``
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "engine"))
sys.path.insert(0, str(ROOT))

from test_hostile import TIME_LIMIT, _limit_memory, build_corpus, case_command  # noqa: E402


def measure(case, cwd: Path) -> tuple[int, str, float, float]:
    """Run `case` bounded like the tests; ``(exit code, stderr, seconds, peak RSS in MiB of that process)``."""
    argv, env = case_command(case)
    with tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True,
                                preexec_fn=_limit_memory)
        timer = threading.Timer(TIME_LIMIT, proc.kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not a running maximum
        finally:
            timer.cancel()
        dt = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        return proc.returncode, err.read(), dt, usage.ru_maxrss / 1024


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        cases = build_corpus(Path(tmp))
        print("| case | s | peak RSS MiB | exit | message |")
        print("|---|---:|---:|---:|---|")
        ok = True
        for case in cases:
            code, stderr, dt, rss = measure(case, Path(tmp))
            lines = stderr.strip().splitlines()
            msg = lines[-1] if lines else ""
            good = code == 1 and len(lines) == 1 and dt < 10 and rss < 1024
            ok &= good
            print(f"| {case.name} | {dt:.1f} | {rss:.0f} | {code} | {msg[:160].replace('|', '/')} |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

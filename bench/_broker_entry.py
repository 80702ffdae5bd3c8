"""Bench-only entry point for the broker process (process 2 of bench/login_load.py).

Runs ``healthid-broker`` exactly like the installed command. When the environment variable
``HIDB_BENCH_PROFILE`` names a file, SIGUSR1 starts :mod:`cProfile` (timer: process CPU
time) and SIGUSR2 stops it and writes the statistics there, so the profile covers only the
measured phase, not start-up or warm-up. The hook lives in the bench harness on purpose:
production code carries no profiler.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType


def main() -> int:
    from healthid_broker.cli import main as cli_main

    target = os.environ.get("HIDB_BENCH_PROFILE")
    if target:
        import cProfile

        # CPU time, not wall time: the question is where the broker spends its CPU-ms.
        prof = cProfile.Profile(time.process_time)

        def _start(signum: int, frame: FrameType | None) -> None:
            prof.enable()

        def _stop(signum: int, frame: FrameType | None) -> None:
            prof.disable()
            prof.dump_stats(target)

        signal.signal(signal.SIGUSR1, _start)
        signal.signal(signal.SIGUSR2, _stop)
    return cli_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())

"""Bench-only entry point for the broker process (process 2 of bench/login_load.py).

Runs ``healthid-broker`` exactly like the installed command. When the environment variable
``HIDB_BENCH_PROFILE`` names a file, SIGUSR1 starts :mod:`cProfile` (timer: process CPU
time) and SIGUSR2 stops it and writes the statistics there, so the profile covers only the
measured phase, not start-up or warm-up. ``HIDB_BENCH_GARBAGE`` does the same for a count of
the reference cycles the measured logins leave to the garbage collector. The hooks live in
the bench harness on purpose: production code carries no profiler.
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
    garbage = os.environ.get("HIDB_BENCH_GARBAGE")
    if garbage:
        _watch_garbage(garbage)
    return cli_main(sys.argv[1:])


def _watch_garbage(target: str) -> None:
    """SIGUSR1: from now on keep what the cyclic collector frees (``gc.DEBUG_SAVEALL``);
    SIGUSR2: collect once more and write a count of those objects by type (and, for
    functions, code objects and frames, by where they come from) to ``target``. Objects
    that only the cyclic collector frees are reference cycles made per request — work for
    every collection and memory held until one runs."""
    import collections
    import gc
    import json

    def _start(signum: int, frame: FrameType | None) -> None:
        gc.collect()
        gc.garbage.clear()
        gc.set_debug(gc.DEBUG_SAVEALL)

    def _where(obj: object) -> str:
        code = getattr(obj, "__code__", None) or getattr(obj, "f_code", None)
        if code is None and hasattr(obj, "co_filename"):
            code = obj
        name = type(obj).__qualname__
        if code is not None:
            return f"{name} {code.co_filename.rsplit('/', 2)[-1]}:{code.co_qualname}"
        return f"{type(obj).__module__}.{name}"

    def _stop(signum: int, frame: FrameType | None) -> None:
        gc.collect()
        counts = collections.Counter(_where(o) for o in gc.garbage)
        gc.set_debug(0)
        gc.garbage.clear()
        with open(target, "w", encoding="utf-8") as fh:
            json.dump({"objects": sum(counts.values()), "by_type": counts.most_common(60)},
                      fh, indent=1)

    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)


if __name__ == "__main__":
    sys.exit(main())

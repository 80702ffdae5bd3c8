"""The load benchmark (bench/login_load.py) runs end to end with tiny numbers.

This proves the script works — three real processes, complete logins, the Redis in-flight
measurement and its clean-up — and asserts nothing about speed (docs/design.md §8: performance is
measured by the benchmark, not by timed tests).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "login_load.py"
REDIS_DB_URL = "redis://127.0.0.1:6379/13"  # not the bench default (14): tests stay apart


def _load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("login_load", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["login_load"] = mod
    spec.loader.exec_module(mod)
    return mod


bench = _load_bench()


@pytest.mark.slow
@pytest.mark.parametrize("client", ["aiohttp", "httpx"])
def test_bench_script_runs_complete_logins_and_measures_the_store(client: str) -> None:
    r = redis.Redis.from_url(REDIS_DB_URL)
    before = set(r.scan_iter(match="hidb-demo:*"))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--client", client, "--logins", "2", "--repeat", "2",
         "--concurrency", "2", "--warmup", "1",
         "--inflight", "2", "--step-cpu", "2", "--idp", "suedkasse",
         "--redis-url", REDIS_DB_URL, "--json"],
        check=False, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = json.loads(proc.stdout)
    assert rep["logins_completed"] == 4 and rep["logins_requested"] == 4
    runs = rep["runs"]
    assert [r["logins"] for r in runs] == [2, 2] and all(r["errors"] == 0 for r in runs)
    per_run = [r["broker_cpu_ms_per_login"] for r in runs]
    assert rep["broker_cpu_ms_per_login_median"] == bench.median(per_run)
    assert rep["broker_cpu_ms_per_login_max"] == max(per_run)
    assert all(r["load_generator_cpu_ms_per_login"] is not None for r in runs)
    assert rep["errors"] == 0 and rep["first_error"] is None
    assert rep["store"] == "redis" and rep["idp"] == "suedkasse" and rep["client"] == client
    assert rep["logins_per_s"] > 0
    assert 0 < rep["latency_ms"]["p50"] <= rep["latency_ms"]["p99"]
    assert set(rep["step_latency_ms"]) == {"authorize", "idp", "callback", "token"}
    assert rep["broker_cpu_ms_per_login"] is not None and rep["broker_cpu_ms_per_login"] >= 0
    user, system = rep["broker_cpu_ms_per_login_user_system"]
    assert abs(user + system - rep["broker_cpu_ms_per_login"]) < 0.01
    assert rep["step_cpu_logins"] == 2
    states = rep["inflight"]["states"]
    assert set(states) == {"UPSTREAM_PENDING", "CODE_ISSUED"}
    for s in states.values():
        assert s["entries"] == 2
        assert s["value_bytes"] > 0 and s["key_bytes"] > 0
        assert s["bytes"] == s["key_bytes"] + s["value_bytes"]
    assert rep["inflight"]["bytes_per_inflight_login"] == max(
        s["bytes"] for s in states.values())
    # clean-up: the measured in-flight entries are gone (others expire on their own TTL)
    left = set(r.scan_iter(match="hidb-demo:*")) - before
    assert not [k for k in left if k.startswith((b"hidb-demo:login.upstream:",
                                                  b"hidb-demo:login.code:"))]
    assert "work_dir" not in rep  # without --keep nothing is kept


def test_human_table_names_every_figure() -> None:
    rep = {
        "logins_requested": 10, "logins_completed": 9, "concurrency": 2, "warmup": 1,
        "idp": "nordkasse", "store": "redis", "errors": 1, "errors_by_step": {"token": 1},
        "first_error": "token: HTTP 400", "logins_per_s": 3.0, "wall_s": 3.0,
        "latency_ms": {"p50": 10.0, "p99": 20.0},
        "step_latency_ms": {s: {"p50": 1.0, "p99": 2.0} for s in bench.STEPS},
        "broker_cpu_ms_per_login": 4.5, "sandbox_cpu_ms_per_login": 1.0,
        "broker_rss_mib": 100.0, "broker_cpu_ms_by_step": None,
        "inflight": {"k": 2, "bytes_per_inflight_login": 3000.0, "states": {
            "CODE_ISSUED": {"key_bytes": 64, "value_bytes": 2936, "bytes": 3000.0,
                            "redis_memory_usage": 3100, "entries": 2}}},
    }
    text = bench.render(rep)
    assert "MISSES target ≤ 3.0 ms" in text
    assert "3000 B per login (largest state; MISSES" in text
    assert "first: token: HTTP 400" in text
    rep["broker_cpu_ms_per_login"] = 2.0
    assert "meets target ≤ 3.0 ms" in bench.render(rep)
    rep["broker_cpu_ms_per_login_user_system"] = [1.75, 0.25]
    rep["broker_to_sandbox_cpu_ratio"] = 2.0
    text = bench.render(rep)
    assert "user / system      1.75 / 0.25 ms" in text
    assert "broker / sandbox   2.0" in text


@given(st.lists(st.floats(min_value=0, max_value=1e6), min_size=1, max_size=200),
       st.floats(min_value=0.1, max_value=100))
def test_percentile_is_a_member_and_monotone(values: list[float], p: float) -> None:
    v = bench.percentile(values, p)
    assert v in values
    assert sum(1 for x in values if x <= v) >= p * len(values) / 100 - 1e-9
    assert bench.percentile(values, 100) == max(values)
    assert bench.percentile(values, p) <= bench.percentile(values, min(100.0, p + 10))


@given(st.lists(st.floats(min_value=0, max_value=1e6) | st.none(), max_size=50))
def test_median_of_the_known_values(values: list[float | None]) -> None:
    known = sorted(v for v in values if v is not None)
    m = bench.median(values)
    if not known:
        assert m is None
        return
    assert m is not None and known[0] <= m <= known[-1]
    assert sum(1 for v in known if v <= m + 1e-3) >= len(known) / 2
    assert sum(1 for v in known if v >= m - 1e-3) >= len(known) / 2


@pytest.mark.slow
def test_cli_rejects_nonsense_numbers() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--logins", "0"],
                          check=False, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "--logins" in proc.stderr
    proc = subprocess.run([sys.executable, str(SCRIPT), "--repeat", "0"],
                          check=False, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2 and "--repeat" in proc.stderr

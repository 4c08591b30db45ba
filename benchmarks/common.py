"""Shared helpers for the benchmarks: timing medians, peak-memory measurement, machine facts, results files.

Peak memory is the kernel's own high-water mark of resident memory (VmHWM in /proc/self/status), reset
with `echo 5 > /proc/self/clear_refs` right before the measured region, so the peak is that of the region
alone (model loading does not leak into it) yet absolute: it includes the resident weights, the Python
interpreter and torch. Where the reset is not allowed we fall back to ru_maxrss (peak since process start)
and say so in the result.
"""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parent.parent
GiB = 1024 ** 3
MiB = 1024 ** 2


# --- time ------------------------------------------------------------------------------------------
def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """(seconds, result) of one call, wall clock."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def median(xs) -> float:
    return float(statistics.median(xs))


def time_median(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> dict:
    """Median wall time of `repeats` calls after `warmup` untimed calls, with every sample kept."""
    for _ in range(warmup):
        fn()
    samples = [timed(fn)[0] for _ in range(repeats)]
    return {"median_s": median(samples), "samples_s": samples}


# --- memory ----------------------------------------------------------------------------------------
def _status_kib(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field}:\s+(\d+)\s+kB", text, re.M)
    return int(m.group(1)) if m else None


def rss_bytes() -> int:
    """Current resident set size of this process."""
    kib = _status_kib("VmRSS")
    if kib is not None:
        return kib * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_bytes() -> int:
    """Peak resident set size since the last reset_peak() (or process start)."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure_peak(fn: Callable[[], object]) -> dict:
    """Run fn once and return the absolute peak RSS of the process during it, plus RSS before and after."""
    import gc

    gc.collect()
    try:  # hand freed heap pages back to the kernel so leftovers of set-up do not count as "before"
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:
        pass
    before = rss_bytes()
    was_reset = reset_peak()
    seconds, _ = timed(fn)
    return {
        "peak_bytes": peak_bytes(),
        "rss_before_bytes": before,
        "rss_after_bytes": rss_bytes(),
        "seconds": seconds,
        "peak_scope": "region (VmHWM reset before it)" if was_reset else "process (ru_maxrss since start)",
    }


def mem_available_bytes() -> int:
    """MemAvailable from /proc/meminfo: what a new process could take without swapping or an OOM kill."""
    text = Path("/proc/meminfo").read_text()
    return int(re.search(r"^MemAvailable:\s+(\d+)", text, re.M).group(1)) * 1024


def mem_total_bytes() -> int:
    text = Path("/proc/meminfo").read_text()
    return int(re.search(r"^MemTotal:\s+(\d+)", text, re.M).group(1)) * 1024


# --- subprocesses ----------------------------------------------------------------------------------
def run_fresh(script: str | Path, args: list[str], timeout: float = 1800) -> dict:
    """Run `python script args...` in a fresh interpreter and parse the JSON line it prints last.

    Each measurement gets its own process so that one method's peak cannot contaminate another's.
    """
    cmd = [sys.executable, str(script), *args]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout)[-2000:]
        return {"error": f"exit code {proc.returncode}", "stderr_tail": tail}
    return json.loads(lines[-1])


# --- machine and results ---------------------------------------------------------------------------
def machine_info() -> dict:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "ram_gib": round(mem_total_bytes() / GiB, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except Exception:
        return None


def write_results(name: str, payload: dict, out: str | Path | None = None) -> Path:
    path = Path(out) if out else RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def gib(x: float | int | None) -> str:
    return "-" if x is None else f"{x / GiB:.2f}"

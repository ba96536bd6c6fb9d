"""`make bench`: measure every figure of issues 5, 7, 11 (SD writes) and 14 (wire bytes), print one table (figure, measured, target,
met / NOT met), and write docs/benchmarks.md with its plots in docs/bench/.

    python -m bench                 # everything (~8-10 minutes on 2 cores)
    python -m bench --quick         # smaller runs, to try the pipeline (figures are not the real ones)
    python -m bench --only siren,cold_start --no-report
    python -m bench --from-results  # rewrite the report from bench/out/results.json

Each benchmark runs in its own interpreter (bench/_child.py) and its raw result is kept in
bench/out/results.json (not committed)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
BAUDS = (9600, 19200, 115200)


def steps(quick: bool) -> list[tuple[str, str, dict]]:
    """(key, module, measure kwargs), in the order they run."""
    q = quick
    s = [("siren", "siren_latency", {"alarms": 300 if q else 2000, "rate": 5000.0}),
         ("end_to_end", "alarm_end_to_end", {"rounds": 6 if q else 20, "poll": 0.5}),
         ("voice", "voice_latency", {"alarms": 100 if q else 300}),
         ("centres", "centre_confirm", {"rounds": 4 if q else 10, "poll": 0.2})]
    s += [(f"acquire_{b}", "acquire_bus", {"baud": b, "seconds": 3.0 if q else 8.0}) for b in BAUDS]
    s += [(f"wire_{b}", "rtu_wire", {"baud": b, "reads": 40 if q else 200}) for b in BAUDS]
    s += [("outbox", "outbox_drain", {"events": 20_000 if q else 100_000, "ingest_n": 20_000 if q else 100_000}),
          ("load", "daemon_load", {"warmup_s": 2.0 if q else 8.0, "window_s": 6.0 if q else 30.0}),
          ("cold_start", "cold_start", {"runs": 3 if q else 5, "cli_runs": 5 if q else 15,
                                        "calls": 50 if q else 300}),
          ("flood", "command_flood", {"flood": 2_000 if q else 10_000, "rounds": 4 if q else 8}),
          ("reloads", "reload_relays", {"reloads": 50 if q else 1000}),
          ("write_volume", "write_volume", {"warmup_s": 5.0 if q else 15.0, "window_s": 30.0 if q else 180.0}),
          # issue 14 item 5: ~15 min (10 outages of 30 s; 500 gateways for 2 min, a 30 s outage, the receiver catching up)
          ("fleet", "fleet", {"runs": 3, "outage_s": 5.0, "gateways": 50, "duration": 30.0, "outage_at": 10.0}
           if q else {"runs": 10, "outage_s": 30.0, "gateways": 500, "duration": 120.0, "outage_at": 40.0}),
          ("wire_bytes", "wire_bytes", {"speed": 10.0 if q else 1.0, "warmup_s": 8.0 if q else 65.0,
                                        "window_s": 20.0 if q else 180.0}),
          ("update", "update", {"rounds": 1 if q else 3}),
          # issue 14's platform figure: ~8 min (500 gateways, 5 min, 3 receivers on PostgreSQL)
          ("fleet_pg", "fleet_pg", {"gateways": 50, "duration": 60.0, "kill_at": 20.0, "outage_at": 35.0,
                                    "outage_s": 10.0} if q else {}),
          ("platform_store", "platform_store", {"seconds": 10.0 if q else 30.0, "burst": 5_000 if q else 20_000})]
    return s


def machine() -> dict:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    mem_mb = None
    try:
        with open("/proc/meminfo") as f:
            mem_mb = int(next(line for line in f if line.startswith("MemTotal")).split()[1]) // 1024
    except (OSError, StopIteration):
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "kernel": platform.release(), "mem_mb": mem_mb}


def git_state() -> dict | None:
    """The commit measured, and which tracked files differed from it (others' work in progress)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--name-only", "HEAD", "--", "gateway", "drivers", "pyproject.toml"],
                               cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "dirty": dirty}


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def run_step(key: str, module: str, kwargs: dict) -> dict:
    OUT.mkdir(exist_ok=True)
    out = OUT / f"{key}.json"
    out.unlink(missing_ok=True)
    t = time.monotonic()
    print(f"  {key:<14} {module}.measure({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) ...",
          end="", flush=True)
    proc = subprocess.run([sys.executable, str(HERE / "_child.py"), module, json.dumps(kwargs), str(out)],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    took = time.monotonic() - t
    if proc.returncode != 0 or not out.exists():
        print(f" FAILED after {took:.0f} s")
        print("    " + "\n    ".join(proc.stdout.strip().splitlines()[-15:]))
        return {"error": proc.stdout.strip().splitlines()[-1:] or ["no output"], "took_s": took}
    print(f" {took:.0f} s")
    result = json.loads(out.read_text())
    result["took_s"] = took
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs (not the reported figures)")
    ap.add_argument("--only", help="comma-separated step keys or module names")
    ap.add_argument("--no-report", action="store_true", help="do not write docs/benchmarks.md and plots")
    ap.add_argument("--from-results", action="store_true", help="report from bench/out/results.json")
    a = ap.parse_args(argv)
    results_path = OUT / "results.json"
    if a.from_results:
        run = json.loads(results_path.read_text())
    else:
        started = time.monotonic()
        run = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
               "load_before": loadavg(), "quick": a.quick, "git": git_state(), "results": {}}
        if a.only and results_path.exists():  # keep the other figures of the last full run
            previous = json.loads(results_path.read_text())
            run["results"] = previous.get("results", {})
        chosen = set(a.only.split(",")) if a.only else None
        print(f"benchmarks on {run['machine']['nproc']} x {run['machine']['cpu']}, Python "
              f"{run['machine']['python']}, load average {run['load_before']}")
        for key, module, kwargs in steps(a.quick):
            if chosen and key not in chosen and module not in chosen:
                continue
            run["results"][key] = run_step(key, module, kwargs)
        run["load_after"] = loadavg()
        run["took_s"] = time.monotonic() - started
        OUT.mkdir(exist_ok=True)
        results_path.write_text(json.dumps(run, indent=1))
    from bench import _report

    rows = _report.figures(run["results"])
    print()
    print(_report.text_table(rows))
    if "took_s" in run:
        print(f"\n{len(run['results'])} benchmarks in {run['took_s'] / 60:.1f} min; load average before "
              f"{run['load_before']}, after {run.get('load_after', '?')}")
    if not a.no_report:
        md = _report.write(run, rows, ROOT / "docs" / "benchmarks.md", ROOT / "docs" / "bench")
        print(f"wrote {md.relative_to(ROOT)} and plots in docs/bench/")
    failed = [k for k, v in run["results"].items() if "error" in v]
    if failed:
        print(f"benchmarks that failed to run: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

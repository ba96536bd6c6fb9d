"""The platform-driven update's download (gateway/update/fetch.py) over loopback HTTPS: throughput, the
client's CPU per MB (what the Pi pays while the safety loop runs beside it), and what a resume costs
(re-hashing the part already on disk). The server (tests/update_fetch/fetchkit.py: http.server + ssl,
Range answered) runs in a child process so its CPU is not counted.

    python bench/update_fetch.py [--mb 64]

Not in `make bench`'s table yet (the update branch adds its own figures there; the lead merges)."""

from __future__ import annotations

import argparse
import hashlib
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "update_fetch")]

from fetchkit import Ca, FileServer  # noqa: E402

from gateway.config.model import Tls  # noqa: E402
from gateway.sync.tls import tls_context  # noqa: E402
from gateway.update.fetch import PartFile, fetch  # noqa: E402


def _serve(ca_dir: str, path: str, drop: int | None, q) -> None:
    ca = Ca.make(ca_dir)
    data = Path(path).read_bytes()
    with FileServer(ca, {"/b.bundle": data}) as srv:
        if drop:
            srv.drop_after = [drop]
        q.put((srv.port, ca.pem))
        q.get()  # until told to stop


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(mb: int = 64) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-fetch-"))
    data = os.urandom(mb * 1024 * 1024)
    (tmp / "b.bundle").write_bytes(data)
    sha = hashlib.sha256(data).hexdigest()
    out = {"mb": mb}
    for label, drop in (("whole", None), ("dropped_half_way", len(data) // 2)):
        q = mp.Queue()
        p = mp.Process(target=_serve, args=(str(tmp / f"ca-{label}"), str(tmp / "b.bundle"), drop, q))
        p.start()
        port, ca_pem = q.get(timeout=30)
        ctx = tls_context(Tls(ca=ca_pem))
        part = PartFile(str(tmp / f"dl-{label}"), sha)
        url = f"https://127.0.0.1:{port}/b.bundle"
        t, c = time.perf_counter(), _cpu()
        attempts = 0
        while True:
            attempts += 1
            try:
                fetch(url, sha, len(data), part, ctx, max_bytes=len(data), reserve_bytes=0)
                break
            except Exception as e:  # noqa: BLE001 - the drop: resumed at once (the daemon pauses 1 s)
                if getattr(e, "reason", None) != "connection" or attempts > 3:
                    raise
        wall, cpu = time.perf_counter() - t, _cpu() - c
        q.put("stop")
        p.join(10)
        out[label] = {"wall_s": round(wall, 3), "mb_per_s": round(mb / wall, 1),
                      "client_cpu_s_per_mb": round(cpu / mb, 4), "attempts": attempts}
    part = PartFile(str(tmp / "rehash"), sha)
    os.makedirs(part.dir)
    (Path(part.path)).write_bytes(data)
    t = time.perf_counter()
    part.hash_of_first(len(data))
    out["resume_rehash_mb_per_s"] = round(mb / (time.perf_counter() - t), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=64)
    r = measure(ap.parse_args().mb)
    print(f"update download over loopback HTTPS, {r['mb']} MiB (this machine: {os.cpu_count()} cores, shared)")
    for label in ("whole", "dropped_half_way"):
        x = r[label]
        print(f"  {label:18s} {x['wall_s']:7.2f} s  {x['mb_per_s']:7.1f} MiB/s  client CPU {x['client_cpu_s_per_mb'] * 1000:.1f} "
              f"ms/MiB  attempts {x['attempts']}")
    print(f"  resume: re-hashing the part on disk at {r['resume_rehash_mb_per_s']:.0f} MiB/s")


if __name__ == "__main__":
    main()

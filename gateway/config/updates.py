"""`[updates]`: whether this gateway accepts release bundles, and from which release keys
(docs/updates.md). No table: no update is accepted, from the CLI or the platform."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .paths import resolve
from .schema import KEYS, RANGES
from .tables import Table, table_at

DEFAULT_INSTALL_ROOT = "/opt/community-gateway"


@dataclass(frozen=True)
class Updates:
    release_keys: tuple[str, ...]  # PEM Ed25519 public keys, apart from [commands] platform_keys
    health_s: float = 300.0  # the new release must be healthy within this, or it is rolled back
    probation_s: float = 60.0  # healthy without a break this long (within health_s) before the gate passes
    keep: int = 2  # releases kept on disk: the current one and the one before
    install_root: str = DEFAULT_INSTALL_ROOT  # <install_root>/releases/<version>, releases/current
    download_max_mb: float = 200.0  # a platform `update` larger than this is refused before a byte comes


def build_updates(top: Table, base: Path) -> Updates | None:
    t = table_at(top, "updates")
    if t is None:
        return None
    t.check_keys(KEYS["updates"])
    r = RANGES["updates"]
    keys = []
    for i, value in enumerate(t.strings("release_keys", required=True)):
        path = resolve(base, value)
        if not Path(path).is_file():
            t.problem("release_keys", f"file not found: {path}", i)
        keys.append(path)
    if "release_keys" in t.data and not keys:
        t.problem("release_keys", "is empty: no bundle could ever be accepted (remove [updates] to say so)")
    root = t.text("install_root", DEFAULT_INSTALL_ROOT)
    if root is not None and not Path(root).is_absolute():
        t.problem("install_root", f"must be an absolute directory (got \"{root}\")")
    health_s = float(t.number("health_s", 300.0, within=r["health_s"]))
    probation_s = float(t.number("probation_s", min(60.0, health_s / 2), within=r["probation_s"]))
    if probation_s >= health_s:
        t.problem("probation_s", f"must be less than health_s ({health_s:g} s): the probation is part of it")
    return Updates(release_keys=tuple(keys), health_s=health_s, probation_s=probation_s,
                   keep=int(t.integer("keep", 2, within=r["keep"])), install_root=root or DEFAULT_INSTALL_ROOT,
                   download_max_mb=float(t.number("download_max_mb", 200.0, within=r["download_max_mb"])))

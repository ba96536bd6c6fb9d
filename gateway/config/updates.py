"""`[updates]`: whether this gateway accepts signed release bundles, and from whom. Without the table
no update is accepted at all, neither from the platform nor from a USB stick (issue 14; ThingsBoard
gateway #547: an updater that cannot be turned off breaks patched images)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .paths import resolve
from .schema import KEYS, RANGES
from .tables import Table, table_at


@dataclass(frozen=True)
class Updates:
    release_keys: tuple[str, ...] = ()  # Ed25519 public keys (PEM) of the release signers
    health_s: float = 300.0  # the new release must be healthy within this, else it is rolled back
    download_max_mb: float = 200.0  # a platform `update` larger than this is refused before a byte comes
    install_root: str = "/opt/community-gateway"  # releases/<version>/ and the releases/current symlink


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
    root = t.text("install_root")
    return Updates(release_keys=tuple(keys), health_s=float(t.number("health_s", 300.0, within=r["health_s"])),
                   download_max_mb=float(t.number("download_max_mb", 200.0, within=r["download_max_mb"])),
                   install_root=resolve(base, root) if root else Updates.install_root)

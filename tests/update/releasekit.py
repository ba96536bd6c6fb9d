"""Real releases built from this checkout, for the end-to-end update tests and bench/update.py.

    deps = dependency_wheels()                   # every dependency's wheel (pip wheel, from PyPI/cache)
    w = gateway_wheel("0.2.0")                   # the gateway wheel of a copy of the tree, version bumped
    w = gateway_wheel("0.3.0", BROKEN_START)     # ... and with a patch applied to the copy
    bundle = release_bundle(tmp, "0.2.0", key)   # gateway-platform release of those

Both are cached by content (the dependency list; the package source + version + patch) under
/var/cache/community-gateway-test/update (or the temp dir when that is not writable), so a second run
builds nothing: a gateway wheel is `pip wheel --no-deps` of the copy (seconds)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.wheelhouse import REPO, copy_package_source, source_hash  # noqa: E402

_ROOT = Path("/var/cache/community-gateway-test")
CACHE = (_ROOT if os.access(_ROOT, os.W_OK) else Path(tempfile.gettempdir())) / "update-releases"

# A release that fails at every start (its daemon raises before it opens anything), and one whose
# buses never come up (every port open fails): the two bad releases of issue 14.
BROKEN_START = {"gateway/service/process.py": ("def run_daemon(cfg: Config) -> int:\n",
                                               "def run_daemon(cfg: Config) -> int:\n"
                                               "    raise SystemExit('broken release: crashes at start')\n")}
BUSES_NEVER_UP = {"drivers/tcp.py": (
    "            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)\n",
    "            raise OSError(111, 'broken release: never connects')\n")}


def _deps() -> list[str]:
    text = (REPO / "pyproject.toml").read_text()
    block = text.split("dependencies = [", 1)[1].split("]", 1)[0]
    return re.findall(r'^\s*"([^"]+)"', block, re.M)


def _locked(name: str):
    CACHE.mkdir(parents=True, exist_ok=True)
    f = open(CACHE / f".{name}.lock", "w")
    fcntl.flock(f, fcntl.LOCK_EX)
    return f


def dependency_wheels() -> Path:
    deps = _deps()
    d = CACHE / ("deps-" + hashlib.sha256("\n".join(deps).encode()).hexdigest()[:16])
    if (d / ".complete").exists():
        return d
    with _locked("deps"):
        if not (d / ".complete").exists():
            tmp = Path(tempfile.mkdtemp(dir=CACHE))
            r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(tmp), *deps],
                               capture_output=True, text=True, timeout=900)
            if r.returncode != 0:
                raise RuntimeError(f"pip wheel of the dependencies failed:\n{r.stderr}")
            shutil.rmtree(d, ignore_errors=True)
            tmp.rename(d)
            (d / ".complete").write_text("\n".join(deps) + "\n")
    return d


def gateway_wheel(version: str, patch: dict | None = None) -> Path:
    key = hashlib.sha256(f"{source_hash()}|{version}|{sorted((patch or {}).items())!r}".encode()).hexdigest()[:16]
    d = CACHE / f"gw-{version}-{key}"
    done = d / ".complete"
    if not done.exists():
        with _locked("gw"):
            if not done.exists():
                work = Path(tempfile.mkdtemp(dir=CACHE))
                try:
                    src = copy_package_source(work / "src")
                    _set_version(src, version)
                    for rel, change in (patch or {}).items():
                        p = src / rel
                        old, new = change
                        text = p.read_text()
                        assert old in text, f"patch for {rel} does not apply"
                        p.write_text(text.replace(old, new, 1))
                    out = work / "out"
                    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                                        "--wheel-dir", str(out), str(src)],
                                       capture_output=True, text=True, timeout=300, cwd=work)
                    if r.returncode != 0:
                        raise RuntimeError(f"pip wheel of the gateway {version} failed:\n{r.stderr}")
                    shutil.rmtree(d, ignore_errors=True)
                    out.rename(d)
                    done.write_text(version + "\n")
                finally:
                    shutil.rmtree(work, ignore_errors=True)
    (w,) = d.glob("community_gateway-*.whl")
    return w


def _set_version(src: Path, version: str) -> None:
    py = src / "pyproject.toml"
    py.write_text(re.sub(r'^version = "[^"]+"', f'version = "{version}"', py.read_text(), count=1, flags=re.M))
    init = src / "gateway" / "__init__.py"
    init.write_text(re.sub(r'^__version__ = "[^"]+"', f'__version__ = "{version}"', init.read_text(),
                           count=1, flags=re.M))


def release_wheels(dest: Path, version: str, patch: dict | None = None) -> Path:
    """dest/: the dependencies' wheels and the gateway's (hard links into the cache where possible)."""
    dest.mkdir(parents=True, exist_ok=True)
    for w in [*dependency_wheels().glob("*.whl"), gateway_wheel(version, patch)]:
        try:
            os.link(w, dest / w.name)
        except OSError:
            shutil.copy2(w, dest / w.name)
    return dest


def release_bundle(tmp: Path, version: str, key: str, patch: dict | None = None,
                   min_version: str | None = None) -> Path:
    from gateway.update.bundle import build_bundle

    out = tmp / f"community-gateway-{version}.tar"
    build_bundle(version=version, wheels_dir=str(release_wheels(tmp / f"wheels-{version}", version, patch)),
                 key_path=key, out=str(out), min_version=min_version)
    return out

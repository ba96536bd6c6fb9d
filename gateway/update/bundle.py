"""Release bundles: build one (`gateway-platform release`), and open one only after it is proven whole
and signed (docs/updates.md).

A bundle is an uncompressed POSIX tar (the wheels are zip files already):

    manifest.json   canonical JSON, signed (manifest.py)
    manifest.sig    Ed25519 over manifest.json, base64url
    wheels/*.whl    the gateway's wheel and every dependency's, each listed with sha256 and size

`open_verified` reads the two manifest members first and checks the signature and the version rules
before it writes a byte; then it copies each wheel into a staging directory while hashing it, and
refuses the whole bundle on any member that is missing, unlisted, of the wrong size or hash."""

from __future__ import annotations

import hashlib
import io
import os
import platform
import sys
import tarfile
import time

from gateway.errors import UpdateError

from . import manifest as M
from . import releases as R
from . import versions

MAX_WHEEL_BYTES = 256 << 20


def wheel_tags(filename: str) -> tuple[str, str, str]:
    """(python, abi, platform) tags of a wheel file name (PEP 427: name-ver[-build]-py-abi-plat.whl)."""
    parts = os.path.basename(filename)[:-4].split("-")
    if len(parts) not in (5, 6):
        raise UpdateError("manifest", f"{filename} is not a wheel file name")
    return parts[-3], parts[-2], parts[-1]


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_bundle(*, version: str, wheels_dir: str, key_path: str, out: str, min_version: str | None = None,
                 created: str | None = None) -> dict:
    """Write the bundle for `version` from every wheel in `wheels_dir`; returns its manifest."""
    if not versions.valid(version):
        raise UpdateError("version", f"--version {version!r} is not a release version (like 1.4.2)")
    min_version = min_version or "0"
    if versions.compare(min_version, version) > 0:
        raise UpdateError("version", f"--min-version {min_version} is above --version {version}")
    key = M.load_private_key(key_path)
    wheels = sorted(n for n in os.listdir(wheels_dir) if n.endswith(".whl"))
    ours = [n for n in wheels if n.startswith("community_gateway-")]
    want = [n for n in ours if n.split("-")[1] == version]
    if len(want) != 1:
        raise UpdateError("bundle", f"{wheels_dir} must hold exactly one community_gateway-{version}-*.whl "
                                    f"(it holds {', '.join(ours) or 'none'})")
    wheels = [n for n in wheels if n not in ours or n == want[0]]
    files = {}
    for n in wheels:
        p = os.path.join(wheels_dir, n)
        files[f"wheels/{n}"] = {"sha256": _sha256(p), "size": os.path.getsize(p)}
    plats = sorted({wheel_tags(n)[2] for n in wheels})
    m = {"format": M.FORMAT, "name": M.NAME, "version": version, "min_version": min_version,
         "python": ">=3.11", "platforms": plats, "gateway_wheel": f"wheels/{want[0]}", "files": files,
         "created": created or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    data = M.encode(m)
    sig = M.sign(key, data)
    tmp = out + ".tmp"
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, blob in ((M.MANIFEST, data), (M.SIGNATURE, sig)):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = len(blob), int(time.time()), 0o644
            tar.addfile(ti, io.BytesIO(blob))
        for n in wheels:
            tar.add(os.path.join(wheels_dir, n), arcname=f"wheels/{n}", recursive=False,
                    filter=lambda ti: _plain(ti))
    os.replace(tmp, out)
    return m


def _plain(ti: tarfile.TarInfo) -> tarfile.TarInfo:
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.mode = 0o644
    return ti


def check_platforms(m: dict, machine: str | None = None) -> None:
    """Every wheel installs on this machine: pure, or built for this CPU and this Python."""
    machine = machine or platform.machine()
    py = f"cp{sys.version_info.major}{sys.version_info.minor}"
    for name in m["files"]:
        pytag, abi, plat = wheel_tags(name)
        if plat != "any" and not any(p.startswith(("linux_", "manylinux", "musllinux")) and p.endswith(machine)
                                     for p in plat.split(".")):
            raise UpdateError("platform", f"{name.split('/')[-1]} is built for {plat}, this gateway is "
                                          f"linux {machine}: a bundle for another board")
        if abi.startswith("cp3") and abi != "abi3" and py not in abi.split("."):
            raise UpdateError("platform", f"{name.split('/')[-1]} is built for {abi}, this gateway runs {py}")


def check_versions(m: dict, running: str | None) -> None:
    if running is None:
        return
    if versions.compare(running, m["min_version"]) < 0:
        raise UpdateError("floor", f"release {m['version']} may replace {m['min_version']} or later only; this "
                                   f"gateway runs {running}: install an intermediate release first")
    if versions.compare(m["version"], running) <= 0:
        raise UpdateError("downgrade", f"release {m['version']} is not newer than the running {running}: "
                                       "refused (a failed update rolls back by itself; see docs/updates.md)")


def open_verified(path: str, release_keys: list, staging: str, *, running: str | None,
                  machine: str | None = None) -> dict:
    """Verify the bundle at `path` and copy its wheels to `staging`/wheels. Returns the manifest."""
    keys = M.load_release_keys(release_keys)
    if not keys:
        raise UpdateError("no_updates", "no release key is pinned ([updates] release_keys)")
    _check_first_headers(path)
    try:
        tar = tarfile.open(path, "r:")
    except FileNotFoundError:
        raise UpdateError("bundle", f"{path}: no such file") from None
    except (tarfile.TarError, EOFError, OSError) as e:
        raise UpdateError("truncated", f"{path} is not a whole release bundle ({e})") from None
    with tar:
        try:
            data = _small(tar, M.MANIFEST)
            sig = _small(tar, M.SIGNATURE)
            M.verify(data, sig, keys)
            m = M.parse(data)
            check_versions(m, running)
            check_platforms(m, machine)
            _extract(tar, m, staging)
        except (tarfile.TarError, EOFError) as e:
            raise UpdateError("truncated", f"{path} ends early or is damaged ({e}): download it again") from None
    return m


def _check_first_headers(path: str) -> None:
    """Read the first two 512-byte tar headers ourselves, before tarfile does: each must be a plain
    file (no pax or GNU extended header, which tarfile reads whole into memory - tarfile._proc_pax:
    fileobj.read(size) - before anything is checked), manifest.json then manifest.sig, each no larger
    than MAX_MANIFEST_BYTES. Everything after them is read only once the signature is good."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise UpdateError("bundle", f"{path}: no such file") from None
    except OSError as e:
        raise UpdateError("bundle", f"cannot read {path}: {e.strerror}") from None
    with f:
        offset = 0
        for name in (M.MANIFEST, M.SIGNATURE):
            f.seek(offset)
            buf = f.read(tarfile.BLOCKSIZE)
            if len(buf) < tarfile.BLOCKSIZE:
                raise UpdateError("truncated", f"{path} is not a whole release bundle (it ends before its {name})")
            try:
                ti = tarfile.TarInfo.frombuf(buf, "utf-8", "surrogateescape")
            except tarfile.TarError as e:
                # as tarfile.open's own refusal said it: a damaged or cut download is the likely cause
                raise UpdateError("truncated", f"{path} is not a whole release bundle ({e})") from None
            if ti.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or ti.name != name or ti.size > M.MAX_MANIFEST_BYTES:
                raise UpdateError("bundle", f"not a release bundle: its first members must be manifest.json and "
                                            f"manifest.sig, small plain files (found {ti.name!r}, type "
                                            f"{ti.type!r}, {ti.size} bytes)")
            offset += tarfile.BLOCKSIZE + -(-ti.size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE


def _small(tar: tarfile.TarFile, name: str) -> bytes:
    ti = tar.next()
    if ti is None:
        raise UpdateError("truncated", f"the bundle ends before its {name}")
    if ti.name != name or not ti.isfile() or ti.size > M.MAX_MANIFEST_BYTES:
        raise UpdateError("bundle", f"not a release bundle: its first members must be manifest.json and "
                                    f"manifest.sig (found {ti.name!r})")
    data = tar.extractfile(ti).read()
    if len(data) != ti.size:
        raise UpdateError("truncated", f"the bundle's {name} is cut short")
    return data


def _extract(tar: tarfile.TarFile, m: dict, staging: str) -> None:
    files = m["files"]
    wheels = os.path.join(staging, "wheels")
    os.makedirs(wheels, exist_ok=True)
    R.give_to_owner_of(staging, os.path.dirname(staging))  # root's wheels in the service's directory:
    # the service can remove them (a root apply killed halfway, then the launcher's recover())
    seen = set()
    while True:
        ti = tar.next()
        if ti is None:
            break
        if ti.name not in files or ti.name in seen or not ti.isfile():
            raise UpdateError("bundle", f"the bundle holds {ti.name!r}, which its manifest does not list")
        want = files[ti.name]
        if ti.size != want["size"] or ti.size > MAX_WHEEL_BYTES:
            raise UpdateError("sha256", f"{ti.name} is {ti.size} bytes, the manifest says {want['size']}")
        src = tar.extractfile(ti)
        h = hashlib.sha256()
        n = 0
        dst = os.path.join(wheels, os.path.basename(ti.name))
        try:
            with R.open_nofollow(dst, "wb", fresh=True) as out:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    h.update(chunk)
                    out.write(chunk)
                    n += len(chunk)
        except OSError as e:
            raise _disk(e, staging) from None
        if n != want["size"]:
            raise UpdateError("truncated", f"{ti.name} is cut short ({n} of {want['size']} bytes)")
        if h.hexdigest() != want["sha256"]:
            raise UpdateError("sha256", f"{ti.name} does not match its sha256 in the signed manifest: "
                                        "the bundle was altered or damaged; refused")
        seen.add(ti.name)
    missing = sorted(set(files) - seen)
    if missing:
        raise UpdateError("truncated", f"the bundle lacks {len(missing)} of the files its manifest lists "
                                       f"({missing[0]}, ...): it was cut short; download it again")


def _disk(e: OSError, where: str) -> UpdateError:
    import errno

    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return UpdateError("disk_full", f"no space left for the update under {where}: free some space; "
                                        "the running release is untouched")
    return UpdateError("install", f"cannot write under {where}: {e.strerror}")

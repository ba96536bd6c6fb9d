"""The downloaded bundle handed to gateway.update.apply.apply_bundle in the running daemon: a real signed
bundle (gateway.update.bundle.build_bundle, a tiny wheel of a bumped version) comes over HTTPS through a
signed `update` command and is installed into releases/<version>, switched to and the daemon restarted;
one signed by a key the gateway does not pin is refused after the download, nothing switched."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fetchsite import Site, replies_json
from fetchkit import tiny_gateway_wheel
from gateway.platform.keys import keygen
from gateway.update.bundle import build_bundle
from tests.mosquitto import wait_for


def _bundle(tmp: Path, key: str, version: str = "99.0.0") -> tuple[bytes, str]:
    wheels = tmp / f"wheels-{version}"
    tiny_gateway_wheel(wheels, version)
    out = tmp / f"r-{version}-{Path(key).stem}.bundle"
    build_bundle(version=version, wheels_dir=str(wheels), key_path=key, out=str(out))
    data = out.read_bytes()
    return data, hashlib.sha256(data).hexdigest()


def test_a_downloaded_bundle_is_installed_switched_and_the_daemon_restarted(tmp_path):
    with Site(tmp_path) as site:
        data, sha = _bundle(tmp_path, str(tmp_path / "release.key"))
        with site.file_server({"/r.bundle": data}) as srv:
            srv.drop_after = [len(data) // 2]  # and resumed on the way
            cmd = site.command({"url": srv.url("/r.bundle"), "sha256": sha, "size": len(data), "version": "99.0.0"})
            replies = site.send(cmd, timeout=120)
        last = replies[-1]
        assert last["ok"] and last["result"]["state"] == "restarting", replies_json(replies)
        assert last["result"]["version"] == "99.0.0"
        current = tmp_path / "opt" / "releases" / "current"
        assert os.readlink(current).rstrip("/").endswith("99.0.0")
        assert (tmp_path / "opt" / "releases" / "99.0.0" / "bin" / "python").exists()
        # apply_bundle ended the daemon to restart it; systemd would start it again (through the launcher,
        # into the new release): here the test does, and the audit events still in the outbox arrive
        site.proc.wait(30)
        site.start_gateway()
        assert "downloaded" in site.outcomes(cmd["id"])
        steps = ("received", "verified", "installed", "switched", "restarting")
        wait_for(lambda: all(s in site.apply_steps(cmd["id"]) for s in steps), 30,
                 what=f"the journal's audit events {steps} (got {site.apply_steps(cmd['id'])})")
        assert not (site.fetch_dir / "job.json").exists()
        assert not list(site.fetch_dir.glob("*.bundle")) and not list(site.fetch_dir.glob("*.part"))


def test_a_bundle_signed_by_an_unpinned_key_is_refused_after_the_download(tmp_path):
    with Site(tmp_path) as site:
        keygen(str(tmp_path / "rogue"))
        data, sha = _bundle(tmp_path, str(tmp_path / "rogue.key"))
        with site.file_server({"/r.bundle": data}) as srv:
            cmd = site.command({"url": srv.url("/r.bundle"), "sha256": sha, "size": len(data)})
            replies = site.send(cmd, timeout=60)
        last = replies[-1]
        assert last["ok"] is False and last["error"] == "signature", replies_json(replies)
        assert not (tmp_path / "opt" / "releases" / "current").exists()
        assert site.proc.poll() is None  # still running the release it ran
        wait_for(lambda: "refused" in site.apply_steps(cmd["id"]), 10, what="the journal's audit 'refused'")

"""gateway/update/remote.py at a daemon's start, in process: what an earlier run left in
<data_dir>/update-fetch decides what happens — a complete bundle is handed over without a byte fetched
again, a job the config no longer allows is abandoned and said so, an unreadable job is moved aside,
parts of other bundles are removed. The real apply_bundle takes the hand-over (a bundle signed by a key
the gateway does not pin: refused at once, nothing installed)."""

from __future__ import annotations

import hashlib
import json
import os
import textwrap

import pytest

from fetchkit import Ca, FileServer, tiny_gateway_wheel
from gateway.config import load_config
from gateway.platform.keys import keygen
from gateway.update.bundle import build_bundle
from gateway.update.fetch import PartFile
from gateway.update.remote import RemoteUpdate
from tests.mosquitto import wait_for


class Running:
    """What RemoteUpdate needs of the daemon: its config."""

    def __init__(self, cfg):
        self.cfg = cfg


def _config(tmp_path, ca: Ca, updates: bool = True):
    keygen(str(tmp_path / "release"))
    text = textwrap.dedent(f"""
        [gateway]
        id = "resume-gw"
        data_dir = "./var"

        [uplink]
        host = "127.0.0.1"
        port = 1

        [uplink.tls]
        ca = "{ca.pem}"
        """)
    if updates:
        text += f'\n[updates]\nrelease_keys = ["./release.pub"]\ninstall_root = "{tmp_path / "opt"}"\n'
    (tmp_path / "gateway.toml").write_text(text)
    return load_config(str(tmp_path / "gateway.toml"))


@pytest.fixture
def ca(tmp_path):
    return Ca.make(tmp_path / "ca")


def _updater(cfg):
    audits, replies = [], []
    up = RemoteUpdate(Running(cfg), audit=audits.append, reply=replies.append)
    return up, audits, replies


def _job(up, sha, size, url="https://127.0.0.1:9/x.bundle"):
    os.makedirs(up.dir, exist_ok=True)
    with open(up.job_path, "w") as f:
        json.dump({"command_id": "c-1", "url": url, "sha256": sha, "size": size}, f)


def test_a_complete_bundle_left_by_a_stop_is_handed_over_without_a_byte_fetched_again(tmp_path, ca):
    cfg = _config(tmp_path, ca)
    keygen(str(tmp_path / "rogue"))
    tiny_gateway_wheel(tmp_path / "wheels", "99.0.0")
    out = tmp_path / "r.bundle"
    build_bundle(version="99.0.0", wheels_dir=str(tmp_path / "wheels"), key_path=str(tmp_path / "rogue.key"), out=str(out))
    data = out.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    with FileServer(ca, {"/r.bundle": data}) as srv:
        up, audits, replies = _updater(cfg)
        _job(up, sha, len(data), srv.url("/r.bundle"))
        part = PartFile(up.dir, sha)
        with open(part.done_path, "wb") as f:
            f.write(data)  # verified and renamed, then the gateway stopped before the hand-over
        assert up.resume_pending()
        wait_for(lambda: replies and replies[-1]["result"].get("state") == "failed", 30, what="the outcome")
        assert srv.requests == []
    assert replies[-1]["error"] == "signature", replies[-1]
    assert [a["outcome"] for a in audits][:2] == ["resumed", "downloaded"]
    from gateway.update import journal as J

    steps = [e["step"] for e in J.Journal(os.path.join(cfg.gateway.data_dir, "update", "journal")).entries()]
    assert steps[-1] == "refused" and [e["by"] for e in J.Journal(os.path.join(cfg.gateway.data_dir, "update",
                                                                                 "journal")).entries()][-1] == "platform:c-1"
    assert not os.path.exists(part.done_path) and not os.path.exists(up.job_path)
    assert not (tmp_path / "opt" / "releases" / "current").exists()


def test_a_job_the_config_no_longer_allows_is_abandoned_and_reported(tmp_path, ca):
    cfg = _config(tmp_path, ca, updates=False)
    up, audits, replies = _updater(cfg)
    sha = "ab" * 32
    _job(up, sha, 1000)
    part = PartFile(up.dir, sha)
    with open(part.path, "wb") as f:
        f.write(b"x" * 500)
    assert up.resume_pending()
    wait_for(lambda: replies, 10, what="the reply")
    assert replies[-1]["error"] == "unavailable" and "[updates]" in replies[-1]["message"]
    assert not os.path.exists(part.path) and not os.path.exists(up.job_path)


def test_an_unreadable_job_is_moved_aside_and_other_parts_removed(tmp_path, ca):
    cfg = _config(tmp_path, ca)
    up, audits, replies = _updater(cfg)
    os.makedirs(up.dir)
    with open(up.job_path, "w") as f:
        f.write('{"command_id": "c-1", "url": ')  # cut by a power cut (it is written atomically: a bug)
    assert up.resume_pending() is False
    assert not os.path.exists(up.job_path) and any(n.startswith("job.json.bad-") for n in os.listdir(up.dir))
    stale = PartFile(up.dir, "cd" * 32)
    open(stale.path, "wb").close()
    open(stale.done_path, "wb").close()
    assert up.resume_pending() is False
    assert not os.path.exists(stale.path) and not os.path.exists(stale.done_path)
    assert replies == []


def test_a_server_that_stops_giving_bytes_is_given_up_and_the_same_bundle_resumes_later(tmp_path, ca):
    cfg = _config(tmp_path, ca)
    data = os.urandom(600_000)
    sha = hashlib.sha256(data).hexdigest()
    with FileServer(ca, {"/r.bundle": data}) as srv:
        srv.drop_after = [100_000] + [0] * 20  # then every attempt is cut before its first byte
        audits, replies = [], []
        up = RemoteUpdate(Running(cfg), audit=audits.append, reply=replies.append, pauses_s=(0.01,) * 6)
        first = up.start("c-1", {"url": srv.url("/r.bundle"), "sha256": sha, "size": len(data)})
        assert first["resumed_from"] == 0
        wait_for(lambda: replies and replies[-1]["result"].get("state") == "failed", 30, what="giving up")
        assert replies[-1]["error"] == "connection" and "gave up after 6 attempts" in replies[-1]["message"]
        assert [a["outcome"] for a in audits].count("retrying") == 6
        assert not os.path.exists(up.job_path)
        assert PartFile(up.dir, sha).durable_length() == 100_000  # kept
        srv.drop_after = []
        again = up.start("c-2", {"url": srv.url("/r.bundle"), "sha256": sha, "size": len(data)})
        assert again["resumed_from"] == 100_000
        wait_for(lambda: replies[-1]["id"] == "c-2" and replies[-1]["result"].get("state") == "failed", 30,
                 what="the second command's outcome")
        assert srv.requests[-1][1] == "bytes=100000-"
        # downloaded whole this time and handed over: random bytes are no bundle, apply_bundle says so
        assert "downloaded" in [a["outcome"] for a in audits if a["command_id"] == "c-2"]
        assert replies[-1]["error"] not in ("connection", "timeout", "sha256_mismatch"), replies[-1]


def test_status_shows_the_download_in_progress(tmp_path, ca):
    from gateway.cli.status_screen import _release
    from gateway.update.remote import download_status

    cfg = _config(tmp_path, ca)
    up, audits, replies = _updater(cfg)
    sha = "ef" * 32
    _job(up, sha, 48 * 2**20)
    with open(PartFile(up.dir, sha).path, "wb") as f:
        f.write(b"\0" * (12 * 2**20))
    st = download_status(cfg.gateway.data_dir)
    assert st["downloading"] == {"command_id": "c-1", "version": None, "size": 48 * 2**20, "received": 12 * 2**20}
    line = _release({"release": "0.2.0", "update_download": st})[0]
    assert line == "release 0.2.0; downloading an update: 12 of 48 MiB"

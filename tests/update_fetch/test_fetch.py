"""gateway/update/fetch.py against a real HTTPS server (tests/update_fetch/fetchkit.py): resumed with
Range after a dropped connection, refused when it is not the signed-for file or not from the pinned CA."""

from __future__ import annotations

import hashlib
import os
import ssl

import pytest

from fetchkit import Ca, FileServer
from gateway.errors import CommandError
from gateway.update.fetch import RETRYABLE, PartFile, fetch

DATA = os.urandom(3 * 1024 * 1024 + 12345)  # not a multiple of any chunk size
SHA = hashlib.sha256(DATA).hexdigest()
MAX = 10 * 1024 * 1024


def pinned(ca: Ca) -> ssl.SSLContext:
    """What the gateway uses: gateway/sync/tls.py's context with the uplink's CA file."""
    from gateway.config.model import Tls
    from gateway.sync.tls import tls_context

    return tls_context(Tls(ca=ca.pem))


@pytest.fixture
def ca(tmp_path):
    return Ca.make(tmp_path / "ca")


@pytest.fixture
def srv(ca):
    with FileServer(ca, {"/r.bundle": DATA, "/short.bundle": DATA[:-1000]}) as s:
        yield s


def test_a_whole_download_is_verified_and_renamed(tmp_path, ca, srv):
    part = PartFile(str(tmp_path / "dl"), SHA)
    seen = []
    path = fetch(srv.url("/r.bundle"), SHA, len(DATA), part, pinned(ca), max_bytes=MAX,
                 progress=lambda got, size, start: seen.append(got))
    assert path == part.done_path and open(path, "rb").read() == DATA
    assert not os.path.exists(part.path) and not os.path.exists(part.len_path)
    assert seen[-1] == len(DATA)


def test_a_dropped_connection_resumes_with_range_from_the_bytes_on_disk(tmp_path, ca, srv):
    part = PartFile(str(tmp_path / "dl"), SHA)
    srv.drop_after = [1_000_000]
    with pytest.raises(CommandError) as e:
        fetch(srv.url("/r.bundle"), SHA, len(DATA), part, pinned(ca), max_bytes=MAX)
    assert e.value.reason in RETRYABLE
    kept = part.durable_length()
    assert 0 < kept <= 1_000_000
    path = fetch(srv.url("/r.bundle"), SHA, len(DATA), part, pinned(ca), max_bytes=MAX)
    assert open(path, "rb").read() == DATA
    assert srv.requests[-1] == ("/r.bundle", f"bytes={kept}-")
    assert srv.sent < len(DATA) + 1_000_001  # the first million was not fetched twice


def test_an_unsynced_tail_is_not_trusted(tmp_path, ca, srv):
    """After a power cut the file may be longer than what was fsynced: resume from the recorded length."""
    part = PartFile(str(tmp_path / "dl"), SHA)
    os.makedirs(part.dir)
    with open(part.path, "wb") as f:
        f.write(DATA[:500_000] + b"\0" * 200_000)  # zeros where the page cache never reached the card
    with open(part.len_path, "w") as f:
        f.write("500000\n")
    assert part.durable_length() == 500_000
    path = fetch(srv.url("/r.bundle"), SHA, len(DATA), part, pinned(ca), max_bytes=MAX)
    assert open(path, "rb").read() == DATA and srv.requests[-1][1] == "bytes=500000-"


def test_a_server_ignoring_range_starts_again(tmp_path, ca, srv):
    part = PartFile(str(tmp_path / "dl"), SHA)
    srv.drop_after = [700_000]
    with pytest.raises(CommandError):
        fetch(srv.url("/r.bundle"), SHA, len(DATA), part, pinned(ca), max_bytes=MAX)
    srv.ignore_range = True
    assert open(fetch(srv.url("/r.bundle"), SHA, len(DATA), part, pinned(ca), max_bytes=MAX), "rb").read() == DATA


@pytest.mark.parametrize("case, reason", [
    ("wrong_sha", "sha256_mismatch"), ("truncated", "size_mismatch"), ("over_limit", "too_large"),
    ("length_over_limit", "too_large"), ("http", "bad_url"), ("missing", "http_error"),
])
def test_refused(tmp_path, ca, srv, case, reason):
    part = PartFile(str(tmp_path / "dl"), SHA)
    url, sha, size, limit = srv.url("/r.bundle"), SHA, len(DATA), MAX
    if case == "wrong_sha":
        sha = hashlib.sha256(b"another bundle").hexdigest()
        part = PartFile(str(tmp_path / "dl"), sha)
    elif case == "truncated":  # the server has a shorter file than the one signed for
        url = srv.url("/short.bundle")
    elif case == "over_limit":
        limit = len(DATA) - 1
    elif case == "length_over_limit":  # the server claims a huge body: refused before a byte is written
        srv.lie_length = 50 * MAX
        limit = 2 * MAX
    elif case == "http":
        url = url.replace("https://", "http://")
    elif case == "missing":
        url = srv.url("/nothing.bundle")
    with pytest.raises(CommandError) as e:
        fetch(url, sha, size, part, pinned(ca), max_bytes=limit)
    assert e.value.reason == reason, e.value.message
    assert e.value.reason not in RETRYABLE
    assert not os.path.exists(part.done_path)
    if case == "wrong_sha":
        assert not os.path.exists(part.path)  # a resume cannot repair it: removed


def test_a_server_from_another_ca_is_refused(tmp_path, ca):
    other = Ca.make(tmp_path / "other", cn="someone else's CA")
    with FileServer(other, {"/r.bundle": DATA}) as evil:
        part = PartFile(str(tmp_path / "dl"), SHA)
        with pytest.raises(CommandError) as e:
            fetch(evil.url("/r.bundle"), SHA, len(DATA), part, pinned(ca), max_bytes=MAX)
    assert e.value.reason == "tls" and "pinned" in e.value.message
    assert not os.path.exists(part.path)


def test_a_stop_request_ends_the_download_with_its_bytes_kept(tmp_path, ca, srv):
    import threading

    from tests.mosquitto import wait_for

    part = PartFile(str(tmp_path / "dl"), SHA)
    stop = threading.Event()
    srv.delay_per_chunk_s = 0.02
    setter = threading.Thread(target=lambda: (wait_for(lambda: srv.sent > 300_000, 20, what="bytes"), stop.set()))
    setter.start()
    with pytest.raises(CommandError) as e:
        fetch(srv.url("/r.bundle"), SHA, len(DATA), part, pinned(ca), max_bytes=MAX, stop=stop)
    setter.join()
    assert e.value.reason == "stopped"
    assert 300_000 <= part.durable_length() < len(DATA)  # kept (fsynced) for the next start


@pytest.fixture
def small_fs(tmp_path):
    """A 6 MB tmpfs (the data directory of a gateway whose SD card is nearly full). Needs root and mount."""
    import shutil
    import subprocess

    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) for a small tmpfs")
    d = tmp_path / "small"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


def test_a_download_that_would_crowd_out_the_outbox_is_refused_before_a_byte(small_fs, ca, srv):
    part = PartFile(str(small_fs / "dl"), SHA)
    with pytest.raises(CommandError) as e:
        fetch(srv.url("/r.bundle"), SHA, len(DATA), part, pinned(ca), max_bytes=MAX)
    assert e.value.reason == "disk_full" and "outbox" in e.value.message
    assert srv.requests == []


def test_a_disk_that_fills_during_the_download_is_reported_and_the_part_removed(small_fs, ca):
    big = os.urandom(8 * 1024 * 1024)  # more than the 6 MB there are
    with FileServer(ca, {"/big.bundle": big}) as s:
        part = PartFile(str(small_fs / "dl"), hashlib.sha256(big).hexdigest())
        with pytest.raises(CommandError) as e:
            fetch(s.url("/big.bundle"), part.sha256, len(big), part, pinned(ca), max_bytes=MAX, reserve_bytes=-MAX)
    assert e.value.reason == "disk_full", e.value.message
    assert not os.path.exists(part.path) and not os.path.exists(part.done_path)
    st = os.statvfs(small_fs)
    assert st.f_bavail * st.f_frsize > 5 * 1024 * 1024  # the room is given back

"""Bad bundles are refused before anything changes: bad signature, wrong sha256, truncated, below the
floor, not newer, another board, no [updates]. Each refusal is journalled (and so audited) with its
reason word, and the running release - the releases directory, the current symlink - is untouched."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from updatekit import fake_wheels, snapshot
from gateway.errors import UpdateError
from gateway.update import apply_bundle
from gateway.update import journal as J
from gateway.update.bundle import build_bundle


def _apply(lay, bundle, pub, **kw):
    return apply_bundle(str(bundle), data_dir=lay.data_dir, install_root=lay.install_root,
                        release_keys=[pub] if pub else [], by="test", restart=lambda: None, **kw)


def _refused(lay, bundle, pub, reason, **kw):
    before = snapshot(lay)
    steps = []
    with pytest.raises(UpdateError) as e:
        _apply(lay, bundle, pub, on_step=steps.append, **kw)
    assert e.value.reason == reason, e.value
    assert snapshot(lay) == before
    last = J.state(J.Journal(lay.journal_path).entries())["last"]
    assert last["outcome"] == "refused" and last["reason"] == reason
    assert steps[-1]["step"] == "refused" and steps[-1]["reason"] == reason
    assert not [n for n in os.listdir(lay.update_dir) if n.startswith("staging-")]
    return e.value


def _bundle(tmp_path, key, version="0.2.0", **kw):
    out = tmp_path / f"b-{version}.tar"
    build_bundle(version=version, wheels_dir=str(fake_wheels(tmp_path / f"w-{version}", version)),
                 key_path=key, out=str(out), **kw)
    return out


def _rewrite(src, dst, change):
    """Copy bundle `src` to `dst` member by member, `change(name, data) -> data`."""
    with tarfile.open(src) as a, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as b:
        for ti in a.getmembers():
            data = change(ti.name, a.extractfile(ti).read())
            ti.size = len(data)
            b.addfile(ti, io.BytesIO(data))


def test_a_good_bundle_passes_verification(tmp_path, layout, release_key, monkeypatch):
    """The control: the same bundle the refusals start from gets past verification to the install (a
    stand-in that fails: the wheels are random bytes), so a refusal below is not "everything is refused"."""
    import gateway.update.apply as A

    def install(lay, version, wheels_dir, manifest):
        assert sorted(os.listdir(wheels_dir)) == sorted(n.split("/")[1] for n in manifest["files"])
        os.makedirs(lay.release_dir(version))
        raise UpdateError("install", "stand-in install")
    monkeypatch.setattr(A, "install_release", install)
    b = _bundle(tmp_path, release_key[0])
    steps = []
    with pytest.raises(UpdateError) as e:
        _apply(layout, b, release_key[1], on_step=steps.append)
    assert [s["step"] for s in steps][:3] == ["received", "verified", "installing"]
    assert e.value.reason == "install"
    assert os.readlink(layout.current) == "0.1.0"
    assert not os.path.exists(layout.release_dir("0.2.0"))


def test_bad_signature(tmp_path, layout, release_key, other_key):
    b = _bundle(tmp_path, other_key[0])  # signed by a key the gateway does not pin
    e = _refused(layout, b, release_key[1], "signature")
    assert "not signed by a pinned release key" in str(e)


def test_manifest_changed_after_signing(tmp_path, layout, release_key):
    b = _bundle(tmp_path, release_key[0], min_version="0.1.0")

    def lower_floor(name, data):
        if name == "manifest.json":
            m = json.loads(data)
            m["version"] = "9.9.9"
            return json.dumps(m, sort_keys=True, separators=(",", ":")).encode()
        return data
    _rewrite(b, tmp_path / "x.tar", lower_floor)
    _refused(layout, tmp_path / "x.tar", release_key[1], "signature")


def test_wrong_sha256_of_a_wheel(tmp_path, layout, release_key):
    b = _bundle(tmp_path, release_key[0])

    def flip(name, data):
        if name.startswith("wheels/dep1"):
            return data[:100] + bytes([data[100] ^ 1]) + data[101:]
        return data
    _rewrite(b, tmp_path / "x.tar", flip)
    e = _refused(layout, tmp_path / "x.tar", release_key[1], "sha256")
    assert "dep1" in str(e)


def test_wrong_sha256_of_the_whole_bundle(tmp_path, layout, release_key):
    """The platform's command carries the bundle's sha256; checked before the bundle is even opened."""
    b = _bundle(tmp_path, release_key[0])
    _refused(layout, b, release_key[1], "sha256", expect_sha256="0" * 64)


@pytest.mark.parametrize("where", ["manifest", "signature", "first wheel", "last wheel", "last header"])
def test_truncated(tmp_path, layout, release_key, where):
    """Cut inside each member (a download that stopped there); the tar's end padding alone is not
    data, so the cuts are inside what the manifest signs for."""
    b = _bundle(tmp_path, release_key[0])
    with tarfile.open(b) as t:
        members = t.getmembers()
    at = {"manifest": members[0].offset_data + 10, "signature": members[1].offset_data + 5,
          "first wheel": members[2].offset_data + 100, "last wheel": members[-1].offset_data + members[-1].size - 1,
          "last header": members[-1].offset + 200}[where]
    cut = tmp_path / "cut.tar"
    cut.write_bytes(b.read_bytes()[:at])
    _refused(layout, cut, release_key[1], "truncated")


def test_below_the_floor(tmp_path, layout, release_key):
    b = _bundle(tmp_path, release_key[0], version="0.5.0", min_version="0.3.0")
    e = _refused(layout, b, release_key[1], "floor")
    assert "0.3.0" in str(e) and "0.1.0" in str(e)


@pytest.mark.parametrize("version", ["0.1.0", "0.0.9", "0.1.0rc1"])
def test_not_newer(tmp_path, layout, release_key, version):
    b = _bundle(tmp_path, release_key[0], version=version)
    _refused(layout, b, release_key[1], "downgrade")


def test_another_board(tmp_path, layout, release_key):
    w = fake_wheels(tmp_path / "w", "0.2.0")
    (w / "rpds_py-1.0-cp311-cp311-manylinux_2_17_aarch64.whl").write_bytes(b"x" * 100)
    build_bundle(version="0.2.0", wheels_dir=str(w), key_path=release_key[0], out=str(tmp_path / "b.tar"))
    import platform
    if platform.machine() == "aarch64":
        pytest.skip("this machine is the bundle's board")
    _refused(layout, tmp_path / "b.tar", release_key[1], "platform")


def test_no_updates_table(tmp_path, layout, release_key):
    b = _bundle(tmp_path, release_key[0])
    e = _refused(layout, b, None, "no_updates")
    assert "[updates]" in str(e)


def test_not_a_bundle(tmp_path, layout, release_key):
    junk = tmp_path / "junk.tar"
    junk.write_bytes(os.urandom(3000))
    _refused(layout, junk, release_key[1], "truncated")


def test_an_unlisted_member(tmp_path, layout, release_key):
    b = _bundle(tmp_path, release_key[0])
    with tarfile.open(b, "a") as t:
        ti = tarfile.TarInfo("wheels/evil-1.0-py3-none-any.whl")
        ti.size = 3
        t.addfile(ti, io.BytesIO(b"abc"))
    _refused(layout, b, release_key[1], "bundle")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: sudo gateway update")
def test_root_leaves_the_journal_to_the_service(tmp_path, layout, release_key, other_key):
    """`sudo gateway update` as root: the journal it starts must stay writable by the service's user
    (the launcher appends to it under User=community-gateway), so it is handed to the data dir's owner."""
    os.chown(layout.data_dir, 65534, 65534)
    os.chown(layout.releases, 65534, 65534)
    b = _bundle(tmp_path, other_key[0])
    with pytest.raises(UpdateError):
        _apply(layout, b, release_key[1])
    for p in (layout.update_dir, layout.journal_path):
        assert os.stat(p).st_uid == 65534, p

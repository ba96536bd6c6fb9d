"""The platform's signed `update` command through a real mosquitto into `gateway run`: the bundle comes
from a real HTTPS server (pinned by the uplink's CA), resumed after a dropped connection and after a
kill -9 of the gateway; refused when it is not the signed-for file, too large, from another CA, not
https, or when the command is forged or replayed; refused outright without [updates]."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from fetchsite import Site, replies_json
from fetchkit import Ca
from tests.mosquitto import wait_for

DATA = os.urandom(9 * 1024 * 1024 + 4321)
SHA = hashlib.sha256(DATA).hexdigest()


def final(replies):
    return replies[-1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with Site(tmp_path_factory.mktemp("upd")) as s:
        yield s


def test_a_dropped_connection_is_resumed_and_the_bundle_handed_over(site):
    with site.file_server({"/r.bundle": DATA}) as srv:
        srv.drop_after = [1_500_000, 2_000_000]  # the link drops twice mid-file
        cmd = site.command({"url": srv.url("/r.bundle"), "sha256": SHA, "size": len(DATA), "version": "9.9.9"})
        replies = site.send(cmd)
    states = [r.get("result", {}).get("state") for r in replies]
    assert replies[0]["ok"] and states[0] == "downloading", replies_json(replies)
    assert "downloaded" in states, replies_json(replies)
    ranges = [r for _, r in srv.requests]
    assert ranges[0] is None and ranges[1] == "bytes=1500000-" and ranges[2] == "bytes=3500000-", ranges
    assert srv.sent == len(DATA)  # not one byte fetched twice
    outcomes = site.outcomes(cmd["id"])
    wait_for(lambda: "downloaded" in site.outcomes(cmd["id"]), 10, what="audit 'downloaded'")
    outcomes = site.outcomes(cmd["id"])
    assert outcomes.count("retrying") == 2 and "accepted" in outcomes, outcomes
    # handed to apply_bundle: these bytes are no release bundle, so it refuses them and says so
    assert final(replies)["ok"] is False and final(replies)["result"]["state"] == "failed", replies_json(replies)
    assert not any(p.name.endswith((".part", ".bundle")) for p in site.fetch_dir.iterdir())
    assert not (site.fetch_dir / "job.json").exists()
    # the published contract: every reply and audit event of the update validates
    from gateway.platform.schemas import Contract

    contract = Contract()
    assert all(contract.errors("cmd-reply", r) == [] for r in replies), replies_json(replies)
    assert contract.errors("cmd-envelope", cmd) == []
    assert all(contract.errors("audit", e) == [] for e in site.audits(cmd["id"]))


@pytest.mark.parametrize("case, error", [
    ("wrong_sha256", "sha256_mismatch"), ("truncated", "size_mismatch"), ("over_limit", "too_large"),
    ("server_over_limit", "too_large"), ("other_ca", "tls"), ("plain_http", "schema"), ("forged", "bad_signature"),
])
def test_refused(site, case, error):
    other = Ca.make(site.tmp / f"other-{case}", cn="another CA")
    with site.file_server({"/r.bundle": DATA, "/short.bundle": DATA[:-1]}) as srv, \
            site.file_server({"/r.bundle": DATA}, ca=other) as evil:
        args = {"url": srv.url("/r.bundle"), "sha256": SHA, "size": len(DATA)}
        key = None
        if case == "wrong_sha256":
            args["sha256"] = hashlib.sha256(b"not this one").hexdigest()
        elif case == "truncated":
            args["url"] = srv.url("/short.bundle")
        elif case == "over_limit":  # [updates] download_max_mb defaults to 200
            args["size"] = 201 * 1024 * 1024
        elif case == "server_over_limit":
            srv.lie_length = 300 * 1024 * 1024
        elif case == "other_ca":
            args["url"] = evil.url("/r.bundle")
        elif case == "plain_http":
            args["url"] = args["url"].replace("https://", "http://")
        elif case == "forged":
            from gateway.platform.keys import load_private_key

            key = load_private_key(str(site.tmp / "intruder.key"))
        cmd = site.command(args, key=key)
        replies = site.send(cmd)
        assert final(replies)["ok"] is False and final(replies)["error"] == error, replies_json(replies)
        if case in ("over_limit", "plain_http", "forged"):
            assert srv.requests == [] and len(replies) == 1  # refused before any download
        if case == "other_ca":
            assert evil.requests == []  # no HTTP request ever reached the unpinned server
    assert not any(p.name.endswith(".bundle") for p in site.fetch_dir.iterdir()) if site.fetch_dir.exists() else True
    if case == "wrong_sha256":
        assert not list(site.fetch_dir.glob("*.part"))


def test_a_replayed_update_is_refused(site):
    with site.file_server({"/r.bundle": DATA[:100_000]}) as srv:
        data = DATA[:100_000]
        cmd = site.command({"url": srv.url("/r.bundle"), "sha256": hashlib.sha256(data).hexdigest(),
                            "size": len(data)})
        first = site.send(cmd)
        assert first[0]["ok"], replies_json(first)
        again = site.send(cmd)  # byte for byte the same signed command, a second time
        assert again[-1]["error"] == "replayed", replies_json(again)
        assert len([r for _, r in srv.requests]) == 1


def test_kill9_mid_download_resumes_at_the_next_start(tmp_path):
    with Site(tmp_path) as site, site.file_server({"/r.bundle": DATA}) as srv:
        srv.delay_per_chunk_s = 0.05  # ~7 s for the file: time to kill it half way
        cmd = site.command({"url": srv.url("/r.bundle"), "sha256": SHA, "size": len(DATA)})
        thread, got = site.send_async(cmd)
        part_len = site.fetch_dir / f"{SHA}.part.len"
        wait_for(part_len.exists, 60, what="the first fsynced 4 MiB")
        site.kill9()
        kept = int(part_len.read_text())
        assert 0 < kept < len(DATA)
        assert json.loads((site.fetch_dir / "job.json").read_text())["command_id"] == cmd["id"]
        srv.delay_per_chunk_s = 0
        site.start_gateway()
        wait_for(lambda: "downloaded" in site.outcomes(cmd["id"]), 60, what="the resumed download")
        ranges = [r for _, r in srv.requests]
        assert ranges[0] is None and ranges[-1] is not None
        resumed_at = int(ranges[-1].split("=")[1].rstrip("-"))
        assert resumed_at >= kept  # the bytes on disk were not fetched again
        resumed = [e for e in site.audits(cmd["id"]) if e.get("outcome") == "resumed"]
        assert resumed and resumed[0]["from_byte"] == resumed_at
        wait_for(lambda: not (site.fetch_dir / "job.json").exists(), 30, what="the job handed over")
        thread.join(30)


def test_without_an_updates_table_no_update_is_accepted(tmp_path):
    with Site(tmp_path, updates=None) as site, site.file_server({"/r.bundle": DATA}) as srv:
        cmd = site.command({"url": srv.url("/r.bundle"), "sha256": SHA, "size": len(DATA)})
        replies = site.send(cmd)
        assert replies[-1]["ok"] is False and replies[-1]["error"] == "unavailable", replies_json(replies)
        assert "[updates]" in replies[-1]["message"]
        assert srv.requests == []


def test_a_download_in_progress_holds_up_neither_the_siren_nor_other_commands(site):
    """The download has its own thread: while it runs, an alarm sounds the siren, a `status` command is
    answered, and a second `update` is refused `busy` (one at a time)."""
    import time

    from gateway.platform.sign import sign_command
    from tests.daemonkit import siren_on

    with site.file_server({"/r.bundle": DATA}) as srv:
        srv.delay_per_chunk_s = 0.05  # ~7 s for the file
        cmd = site.command({"url": srv.url("/r.bundle"), "sha256": SHA, "size": len(DATA)})
        thread, got = site.send_async(cmd)
        wait_for(lambda: srv.sent > 1_000_000, 30, what="the download under way")
        t0 = time.monotonic()
        site.sim.set_value(1, "level", 45.0)
        wait_for(lambda: siren_on(site.tmp), 10, what="the siren during the download")
        siren_s = time.monotonic() - t0
        t0 = time.monotonic()
        status = site.send(sign_command(site.key, cmd["gateway"], "status", {}), timeout=20)
        status_s = time.monotonic() - t0
        assert status[-1]["ok"], replies_json(status)
        second = site.send(site.command({"url": srv.url("/r.bundle"), "sha256": SHA, "size": len(DATA)}))
        assert second[-1]["error"] == "busy", replies_json(second)
        from tests.daemonkit import cli_json

        st = cli_json(site.cfg_path, "status")[0]  # what a technician sees meanwhile
        assert st["update_download"]["downloading"]["command_id"] == cmd["id"], st.get("update_download")
        assert 0 < st["update_download"]["downloading"]["received"] < len(DATA)
        assert srv.sent < len(DATA), "the download finished before the checks: they proved nothing"
        print(f"during the download: siren on after {siren_s:.2f} s, status answered in {status_s:.2f} s")
        srv.delay_per_chunk_s = 0
        thread.join(60)
        assert got and got[-1].get("result", {}).get("state") == "failed", replies_json(got)  # not a bundle
        st = cli_json(site.cfg_path, "status")[0]
        assert "downloading" not in st["update_download"]
        assert st["update_download"]["last"]["command_id"] == cmd["id"]
        assert st["update_download"]["last"]["error"] == got[-1]["error"]
    site.sim.set_value(1, "level", 2.0)


def test_gateway_platform_send_fills_in_sha256_and_size_from_the_bundle_file(site):
    """`gateway-platform send GW update url=... bundle=FILE`: the operator names the file it published."""
    import subprocess
    import sys

    from gateway.platform.sign import command_args

    path = site.tmp / "published.bundle"
    data = DATA[:300_000]
    path.write_bytes(data)
    args = command_args(["url=https://x.example/p.bundle", f"bundle={path}", "version=1.2.3"])
    assert args == {"url": "https://x.example/p.bundle", "sha256": hashlib.sha256(data).hexdigest(),
                    "size": len(data), "version": "1.2.3"}
    with site.file_server({"/p.bundle": data}) as srv:
        run = subprocess.run([sys.executable, "-m", "gateway.platform.cli", "send", "upd-gw", "update",
                              f"url={srv.url('/p.bundle')}", f"bundle={path}", "--key", str(site.tmp / "platform.key"),
                              "--port", str(site.broker.port), "--timeout", "30"],
                             capture_output=True, text=True, timeout=120)
    replies = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    states = [r.get("result", {}).get("state") for r in replies]
    assert states[:2] == ["downloading", "downloaded"] and states[-1] == "failed", run.stdout + run.stderr
    assert run.returncode == 1  # not a release bundle: apply_bundle refused it, and the exit code says so

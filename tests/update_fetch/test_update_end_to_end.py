"""From the platform to a healthy new release, every part real: releases built from this tree
(tests/update/releasekit.py: the gateway wheel with a bumped version and every dependency's wheel,
bundled and signed by gateway.update.bundle), the launcher under a Restart=always stand-in
(tests/update/servicekit.py), a real mosquitto with TLS from the CA that also signs the HTTPS file
server, the reference receiver, a signed `update` command. The gateway runs release 0.2.0; the platform
sends 0.3.0; the gateway downloads it (the link drops once), installs it offline into releases/0.3.0,
switches, restarts into it through the launcher, and the health gate keeps it: the birth says 0.3.0.

Slow (two offline installs of the whole dependency set: a minute or two here)."""

from __future__ import annotations

import hashlib
import os
import sys
import textwrap
import time
from pathlib import Path


from fetchkit import Ca, FileServer
from drivers.sim.modbus_device import SimBus
from gateway.config import load_config
from gateway.platform import Receiver
from gateway.platform.keys import keygen, load_private_key
from gateway.platform.sign import send_command, sign_command
from gateway.update import journal as J
from gateway.update import releases as R
from gateway.update.apply import apply_bundle
from tests.daemonkit import garage_toml
from tests.mosquitto import Mosquitto, TlsFiles, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "update"))

GW = "e2e-gw"


def test_a_platform_update_ends_in_a_healthy_new_release(tmp_path, monkeypatch):
    from releasekit import release_bundle
    from servicekit import Service

    # apply_bundle's import check of a new release runs `python -c` in the cwd: in this checkout it
    # would find the checkout's egg-info (0.1.0). The service runs in / (systemd), the test in tmp.
    monkeypatch.chdir(tmp_path)
    ca = Ca.make(tmp_path / "ca")
    for name in ("platform", "release"):
        keygen(str(tmp_path / name))
    b2 = release_bundle(tmp_path, "0.2.0", str(tmp_path / "release.key"))
    b3 = release_bundle(tmp_path, "0.3.0", str(tmp_path / "release.key"))
    opt, var = tmp_path / "opt", tmp_path / "var"
    var.mkdir()
    layout = R.Layout(str(opt), str(var))
    with Mosquitto(tmp_path / "broker", tls=TlsFiles(ca.pem, *ca.issue("127.0.0.1", "broker"),
                                                     require_certificate=False)) as broker, \
            SimBus.tcp("127.0.0.1", 0) as sim:
        cfg_path = tmp_path / "gateway.toml"
        cfg_path.write_text(textwrap.dedent(f"""
            [gateway]
            id = "{GW}"
            data_dir = "{var}"
            control_socket = "{var}/control.sock"

            [gpio]
            backend = "sim"
            record = "{var}/pins.jsonl"

            [outputs.garage-siren]
            pin = 17
            active_low = true
            pattern = {{ red = "steady" }}
            """) + garage_toml(sim.port) + textwrap.dedent(f"""
            [uplink]
            host = "127.0.0.1"
            port = {broker.tls_port}

            [uplink.tls]
            ca = "{ca.pem}"

            [commands]
            platform_keys = ["{tmp_path / 'platform.pub'}"]

            [updates]
            release_keys = ["{tmp_path / 'release.pub'}"]
            install_root = "{opt}"
            health_s = 120
            probation_s = 2
            """))
        sim.add_device(1, load_config(str(cfg_path)).sensors["garage-b2-water"].profile, {"level": 2.0})
        # the gateway as installed: release 0.2.0 (made the way an update makes one; no daemon runs yet)
        first = apply_bundle(str(b2), data_dir=str(var), install_root=str(opt),
                             release_keys=[str(tmp_path / "release.pub")], by="test", restart=lambda: None,
                             running_version="0.1.0", health_s=120, probation_s=2)
        rx = Receiver("127.0.0.1", broker.port).start()
        svc = Service(layout, args=("run", "-c", str(cfg_path)), socket=str(var / "control.sock")).start()
        try:
            journal = J.Journal(layout.journal_path)
            assert J.wait_outcome(journal, first["update"], 150)["outcome"] == "healthy", svc.log()
            wait_for(lambda: rx.presence.get(GW, {}).get("firmware") == "0.2.0", 30, what="0.2.0 online")

            data = b3.read_bytes()
            with FileServer(ca, {"/community-gateway-0.3.0.tar": data}) as srv:
                srv.drop_after = [len(data) // 3]
                cmd = sign_command(load_private_key(str(tmp_path / "platform.key")), GW, "update",
                                   {"url": srv.url("/community-gateway-0.3.0.tar"),
                                    "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                                    "version": "0.3.0"})
                t0 = time.monotonic()
                replies = send_command("127.0.0.1", broker.port, cmd, timeout=60)
                to_switched = time.monotonic() - t0
            last = replies[-1]
            assert last["ok"] and last["result"]["state"] == "restarting", (replies, svc.log())
            outcome = J.wait_outcome(journal, last["result"]["update"], 200)
            to_healthy = time.monotonic() - t0
            assert outcome["outcome"] == "healthy", (outcome, svc.log())
            assert os.path.basename(os.readlink(opt / "releases" / "current").rstrip("/")) == "0.3.0"
            wait_for(lambda: rx.presence.get(GW, {}).get("firmware") == "0.3.0", 60, what="0.3.0 online")
            ranges = [r for _, r in srv.requests]
            assert ranges[0] is None and ranges[1] == f"bytes={len(data) // 3}-", ranges
            outcomes = [e.get("outcome") for e in rx.of_type("audit") if e.get("command_id") == cmd["id"]]
            assert [o for o in ("accepted", "retrying", "downloaded") if o in outcomes] == ["accepted", "retrying",
                                                                                         "downloaded"], outcomes
            uid = last["result"]["update"]  # the update's id: the health gate (actor "launcher") names it

            def steps():
                return [(e.get("actor"), e.get("result")) for e in rx.of_type("audit")
                        if isinstance(e.get("detail"), dict) and e["detail"].get("update") == uid]
            want = {(f"platform:{cmd['id']}", s) for s in ("verified", "installed", "switched")} | {("launcher", "healthy")}
            wait_for(lambda: want <= set(steps()), 30, what=f"the journal's audit events (got {steps()})")
            print(f"\nplatform update of {len(data) / 2**20:.1f} MiB: command -> switched and restarting "
                  f"{to_switched:.1f} s, -> healthy new release {to_healthy:.1f} s")
        finally:
            svc.stop()
            rx.close()

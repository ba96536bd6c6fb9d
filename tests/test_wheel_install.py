"""The package as a Pi gets it: the built wheel installed into a fresh venv outside the checkout, every
command run from `/`. A non-editable install has no source tree beside it, so whatever is read at run
time (profiles, JSON Schemas, the example config) must travel in the wheel as package data (issue 10:
the installed `gateway check` said "unknown profile ...; profiles are: none").

The wheel is built once per source (tests/wheelhouse.py); GATEWAY_TEST_WHEELS=DIR tests another
directory of wheels instead (a release's, or an old commit's to watch these tests fail)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import venv
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from mosquitto import Mosquitto, free_port
from ptys import wait_until
from wheelhouse import REPO, gateway_wheel, isolated_pip_env, wheelhouse


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """bin/ of a fresh venv holding the gateway wheel and its dependencies, from wheels only."""
    house = Path(os.environ.get("GATEWAY_TEST_WHEELS") or wheelhouse())
    env_dir = tmp_path_factory.mktemp("installed") / "venv"
    venv.create(env_dir, with_pip=True)
    done = subprocess.run([str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-index",
                           "--find-links", str(house), str(gateway_wheel(house))],
                          capture_output=True, text=True, timeout=300, env=isolated_pip_env(), cwd="/")
    assert done.returncode == 0, done.stdout + done.stderr
    return env_dir / "bin"


def run(bin_dir: Path, *args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    """A command of the installed package, from `/`, with nothing of the checkout on any path."""
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": "/root", "LANG": "C.UTF-8"}
    return subprocess.run([str(bin_dir / args[0]), *args[1:]], capture_output=True, text=True, cwd="/",
                          env=env, timeout=timeout, **kw)


def test_the_installed_package_is_not_the_checkout(installed):
    done = run(installed, "python", "-c", "import gateway, drivers; print(gateway.__file__, drivers.__file__)")
    assert done.returncode == 0, done.stderr
    assert str(REPO) not in done.stdout and "/site-packages/gateway/" in done.stdout, done.stdout


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The demo community (every shipped profile: RTU, TCP, serial), on free loopback ports, its data
    in a temp dir: a config file outside the checkout that names its profiles only by name."""
    d = tmp_path_factory.mktemp("site")
    text = (REPO / "config" / "demo.toml").read_text()
    for old in ("15020", "15021", "15022"):
        text = text.replace(old, str(free_port()))
    text = text.replace('data_dir = "../var/demo"', 'data_dir = "data"')
    text = "\n".join(line for line in text.splitlines() if not line.startswith("record ="))
    path = d / "gateway.toml"
    path.write_text(text + "\n")
    return path


def test_check_finds_the_shipped_profiles(installed, site):
    done = run(installed, "gateway", "check", "-c", str(site))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "configuration is valid" in done.stdout


def test_sim_serves_and_read_json_gets_a_good_value_for_every_point(installed, site):
    sim = subprocess.Popen([str(installed / "gateway"), "sim", "-c", str(site), "--for", "60"], cwd="/",
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           env={"PATH": f"{installed}:/usr/bin:/bin", "LANG": "C.UTF-8"})
    try:
        def all_good():
            if sim.poll() is not None:
                raise AssertionError(f"gateway sim exited {sim.returncode}: {sim.stdout.read()}")
            done = run(installed, "gateway", "read", "-c", str(site), "--json", "--direct")
            rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
            return rows if rows and done.returncode == 0 else None
        rows = wait_until(all_good, timeout=30, interval=0.2, what="gateway read --json: every point good")
    finally:
        sim.send_signal(signal.SIGINT)
        sim.communicate(timeout=15)
    assert {r["sensor"] for r in rows} == {"garage-b2-water", "stair-1-smoke", "stair-2-smoke", "hydrant-3",
                                           "pit-level"}
    assert all(r["quality"] == "good" and r["value"] is not None for r in rows), rows


def telemetry(seq: int, **fields) -> dict:
    return {"v": 1, "id": f"gw-w/{seq}", "seq": seq, "ts": "2025-06-01T08:00:00.000Z", "clock_synced": True,
            "boot": "b", "type": "telemetry", "replay": False, "sensor": "w", "point": "p", "unit": "m",
            "quality": "good", "reason": "period", "period_s": 60.0, "count": 1, "min": 1, "max": 1,
            "mean": 1, "last": 1, **fields}


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    b = Mosquitto(tmp_path_factory.mktemp("broker")).start()
    yield b
    b.close()


def test_platform_receive_validates_with_the_installed_schemas(installed, broker):
    proc = subprocess.Popen([str(installed / "gateway-platform"), "receive", "--host", broker.host,
                             "--port", str(broker.port)], cwd="/", stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"})
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        assert "receiving" in proc.stdout.readline()
        client.publish("city/v1/gw-w/event/telemetry", json.dumps(telemetry(1)), qos=1).wait_for_publish(5)
        client.publish("city/v1/gw-w/event/telemetry", json.dumps(telemetry(2, quality="splendid")),
                       qos=1).wait_for_publish(5)
        assert "gw-w #1" in proc.stdout.readline()
    finally:
        client.disconnect()
        client.loop_stop()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "invalid payloads: 1" in out, out  # the schema said no to "splendid": it was loaded and used


def test_a_wheel_without_its_data_says_so(installed, site, tmp_path):
    """Bad input: a package installed without its data (a wheel built by hand from a sdist that lacked
    it, files removed) is a sentence and exit 1, never a silent "no profiles" or a traceback."""
    package = Path(run(installed, "python", "-c", "import gateway, os; print(os.path.dirname(gateway.__file__))")
                   .stdout.strip())
    aside = tmp_path / "aside"
    shutil.move(package / "profiles", aside / "profiles")
    shutil.move(package / "contract", aside / "contract")
    try:
        (package / "profiles").mkdir()
        (package / "contract").mkdir()
        shutil.copy2(aside / "profiles" / "__init__.py", package / "profiles")
        shutil.copy2(aside / "contract" / "__init__.py", package / "contract")
        done = run(installed, "gateway", "check", "-c", str(site))
        assert done.returncode == 1
        assert "installed without its package data" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
        done = run(installed, "gateway-platform", "receive", "--port", str(free_port()))
        assert done.returncode != 0
        assert "no JSON Schemas" in done.stderr and "lacks its package data" in done.stderr, done.stderr
    finally:
        shutil.rmtree(package / "profiles")
        shutil.rmtree(package / "contract")
        shutil.move(aside / "profiles", package / "profiles")
        shutil.move(aside / "contract", package / "contract")

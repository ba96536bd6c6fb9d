"""Issue 6's transport checks: a client key others can read is refused at `gateway check`, and the
client certificate's expiry is known (status shows it, the daemon warns ahead)."""

import os
import textwrap

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.sync.tls import certificate_expiry
from tests.mosquitto import make_tls_files


def _cfg(tmp_path, files):
    p = tmp_path / "g.toml"
    p.write_text(textwrap.dedent(f"""
        [gateway]
        id = "tls-gw"
        data_dir = "./var"

        [buses.b]
        type = "tcp"
        host = "127.0.0.1"
        port = 502

        [uplink]
        host = "127.0.0.1"
        port = 8883
        tls = {{ ca = "{files['ca']}", cert = "{files['client_cert']}", key = "{files['client_key']}" }}
    """))
    return str(p)


def test_a_world_readable_client_key_is_refused_with_the_fix(tmp_path):
    files = make_tls_files(tmp_path / "pki")
    os.chmod(files["client_key"], 0o600)
    assert load_config(_cfg(tmp_path, files)).uplink.tls.key == files["client_key"]
    os.chmod(files["client_key"], 0o644)
    with pytest.raises(ConfigError) as e:
        load_config(_cfg(tmp_path, files))
    msg = str(e.value)
    assert "readable or writable by other users" in msg and f"chmod 600 {files['client_key']}" in msg


def test_certificate_expiry_is_read_from_the_file(tmp_path):
    files = make_tls_files(tmp_path / "pki")
    exp = certificate_expiry(files["client_cert"])
    assert exp["days_left"] > 1 and exp["not_after"].endswith("Z")
    assert "error" in certificate_expiry(str(tmp_path / "missing.pem"))

"""The example configuration (`gateway.toml` beside this file): package data, written by
systemd/install.sh to /etc/community-gateway/gateway.toml on a fresh install. It is rejected by
`gateway check` until the gateway id and the sensors' unit ids are set (tests/test_install.py).

    python -m gateway.examples     prints it"""

from importlib.resources import files


def example_config() -> str:
    return files(__name__).joinpath("gateway.toml").read_text(encoding="utf-8")

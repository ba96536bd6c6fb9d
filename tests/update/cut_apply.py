"""Run apply_bundle and SIGKILL this process at one point (tests/update/test_power_cut.py):

    python cut_apply.py BUNDLE INSTALL_ROOT DATA_DIR RELEASE_PUB POINT

POINT is a step name (killed right after that step is journalled), or mid-install (the release
directory half-made), mid-switch (the temporary symlink made, not yet renamed over current),
after-rename (current switched, the journal not yet told). The install is a stand-in
(servicekit.fake_release) so that each cut costs milliseconds, not a venv."""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import servicekit  # noqa: E402
from gateway.update import apply as A  # noqa: E402
from gateway.update import releases as R  # noqa: E402

bundle, root, data, pub, point = sys.argv[1:6]


def die():
    os.kill(os.getpid(), signal.SIGKILL)


def fake_install(layout, version, wheels_dir, manifest):
    d = servicekit.fake_release(layout, version, "healthy")
    if point == "mid-install":
        os.unlink(os.path.join(d, R.COMPLETE))
        Path(d, "lib").mkdir()
        die()
    return d


A.install_release = fake_install
real_replace = os.replace


def cut_replace(src, dst, *a, **kw):
    if src.endswith(".current.tmp") and point == "mid-switch":
        die()
    real_replace(src, dst, *a, **kw)
    if src.endswith(".current.tmp") and point == "after-rename":
        die()


R.os.replace = cut_replace


def on_step(e):
    if e["step"] == point:
        die()


A.apply_bundle(bundle, data_dir=data, install_root=root, release_keys=[pub], by="test", on_step=on_step,
               health_s=10, probation_s=1, restart=lambda: R.restart_daemon(R.Layout(root, data)))
print("not killed")

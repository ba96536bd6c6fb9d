"""The gateway's own health, as the fields of a `status` event: what the platform needs to tell a
quiet community from a sick gateway (uptime, outbox backlog, CPU temperature, free disk)."""

from __future__ import annotations

import os
import shutil
import time

from gateway.errors import OutboxError
from gateway.record.outbox import Outbox

THERMAL_ZONE = "/sys/class/thermal/thermal_zone0/temp"  # millidegrees C on a Pi


def cpu_temp_c(path: str = THERMAL_ZONE) -> float | None:
    try:
        with open(path) as f:
            return round(int(f.read().strip()) / 1000.0, 1)
    except (OSError, ValueError):
        return None


class Health:
    """Callable returning `status` event fields; the Recorder calls it every status period."""

    def __init__(self, outbox: Outbox, data_dir: str | None = None, started_mono: float | None = None, *,
                 recorder=None, state_file=None):
        self.outbox = outbox
        self.recorder = recorder  # its drop counters go in every status event
        self.state_file = state_file  # the alarm state file: problems found at start, save errors
        self.data_dir = data_dir or os.path.dirname(os.path.abspath(outbox.path))
        self.started = time.monotonic() if started_mono is None else started_mono

    def __call__(self) -> dict:
        try:
            free_mb = round(shutil.disk_usage(self.data_dir).free / 1e6, 1)
        except OSError:
            free_mb = None
        fields = {"uptime_s": round(time.monotonic() - self.started, 1), "cpu_temp_c": cpu_temp_c(),
                  "disk_free_mb": free_mb}
        try:
            st = self.outbox.stats()
            fields["outbox"] = {"state": st["state"], "pending": st["pending"], "depth": st["depth"],
                                "oldest_pending_age_s": st["oldest_pending_age_s"], "evicted": st["evicted"],
                                "gaps_merged": st["gaps_merged"], "failed": st["failed"],
                                "write_errors": st["write_errors"]}
            if st["lost"]:
                fields["outbox"]["lost"] = {k: st["lost"][k] for k in ("reason", "moved_to")}
        except OutboxError as e:
            fields["outbox"] = {"error": str(e)}
        if self.recorder is not None:
            fields["recorder"] = self.recorder.counters()
        if self.state_file is not None:
            st = self.state_file.stats()
            fields["alarm_state"] = {"problems": len(st["problems"]), "save_errors": st["save_errors"]}
        try:
            fields["load_1m"] = round(os.getloadavg()[0], 2)
        except OSError:
            pass  # no load average on this platform: the field is optional
        return fields

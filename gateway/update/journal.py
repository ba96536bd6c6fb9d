"""The update step journal: one JSON line per step, fsynced before the step's effect, replayed at
every start (docs/updates.md, "Power cuts").

    {"n": 7, "ts": 1796000000.1, "update": "3fa1c2d4", "step": "switched", "version": "0.2.0", ...}

A power cut can tear the last line: a line that does not parse is skipped (its step never completed as
far as the journal knows, and each step is safe to redo or undo). `state()` folds the lines into what
`gateway status` shows and the launcher decides with; `recover()` finishes or undoes an update that a
cut left between two steps. Standard library only (see releases.py)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time

try:
    from . import releases as R
except ImportError:  # run by the launcher from a plain directory
    import releases as R  # type: ignore[no-redef]

MAX_STARTS = 3  # starts of a release on trial that never passed its health gate, before it is rolled back
MAX_LINES = 2000  # the journal is compacted to the state when a new update starts past this

TERMINAL = {"refused", "failed", "healthy", "rolled_back"}
LOCK_NAME = "apply.lock"  # in <data_dir>/update/: held (flock) by apply_bundle and recover()


class Busy(Exception):
    """Another process holds the update lock: an update is being applied right now."""


@contextlib.contextmanager
def update_lock(layout: "R.Layout"):
    """The exclusive flock on <data_dir>/update/apply.lock, not waited for: Busy when another process
    (a second `gateway update`, the platform's `update` command, a launcher's recover) holds it. The
    kernel drops it when its holder dies (a power cut, kill -9), so a stale file never blocks."""
    d = layout.update_dir
    fresh = not os.path.isdir(d)
    os.makedirs(d, exist_ok=True)
    if fresh:
        R.give_to_owner_of(d, os.path.dirname(d))
    path = os.path.join(d, LOCK_NAME)
    existed = os.path.lexists(path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except PermissionError:  # root's lock file, opened by the service user: a read-only fd can flock
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not existed:
            R.give_to_owner_of(path, os.path.dirname(d))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(path) from None
        yield
    finally:
        os.close(fd)  # releases the flock


class Journal:
    def __init__(self, path: str):
        self.path = path

    def entries(self) -> list[dict]:
        try:
            with R.open_nofollow(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return []
        except OSError as e:
            if e.errno == errno.ELOOP:  # a symlink in the journal's place: not read through, taken as none
                return []
            raise
        out = []
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                e = json.loads(line)
            except ValueError:
                continue  # torn by a power cut
            if isinstance(e, dict) and "step" in e:
                out.append(e)
        return out

    def append(self, entry: dict) -> dict:
        d = os.path.dirname(self.path)
        fresh = not os.path.isdir(d)
        os.makedirs(d, exist_ok=True)
        if fresh:
            R.give_to_owner_of(d, os.path.dirname(d))
            R.fsync_dir(os.path.dirname(d))
        entries = self.entries()
        e = {"n": (entries[-1].get("n", 0) + 1) if entries else 1, "ts": round(time.time(), 3), **entry}
        line = json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n"
        existed = os.path.exists(self.path)
        # a torn last line gets its own newline first, so it stays one unparsable line
        with R.open_nofollow(self.path, "ab") as f:  # a symlink planted in its place: ELOOP, not followed
            if existed and os.fstat(f.fileno()).st_size and os.pread(f.fileno(), 1, os.fstat(f.fileno()).st_size - 1) != b"\n":
                f.write(b"\n")
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())
        if not existed:
            R.give_to_owner_of(self.path, os.path.dirname(d))
            R.fsync_dir(d)
        return e

    def compact(self) -> None:
        """Keep the last update's lines only (the state needs no more), through a temp file + rename."""
        entries = self.entries()
        if len(entries) <= MAX_LINES:
            return
        keep = entries[-50:]
        tmp = self.path + ".tmp"
        with R.open_nofollow(tmp, "wb", fresh=True) as f:  # a link planted at .tmp is removed, not followed
            for e in keep:
                f.write((json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n").encode())
            f.flush()
            os.fsync(f.fileno())
        R.give_to_owner_of(tmp, os.path.dirname(os.path.dirname(self.path)))
        os.replace(tmp, self.path)
        R.fsync_dir(os.path.dirname(self.path))


def state(entries: list[dict]) -> dict:
    """What the journal says: the last update (id, version, phase, outcome, reason), the release that
    ran before it (`previous`), and the trial in progress, if any."""
    last: dict | None = None
    previous = None
    for e in entries:
        uid = e.get("update")
        if last is None or last["update"] != uid:
            last = {"update": uid, "version": None, "from": None, "phase": None, "outcome": None,
                    "reason": None, "message": None, "by": e.get("by"), "starts": 0, "health_s": 300.0, "probation_s": 60.0,
                    "keep": 2, "at": e.get("ts")}
        step = e["step"]
        last["phase"] = step
        last["at"] = e.get("ts")
        if e.get("version"):
            last["version"] = e["version"]
        if step == "received":
            last["from"] = e.get("running")
        elif step == "switching":
            last["from"] = e.get("previous", last["from"])
            last["health_s"] = float(e.get("health_s", 300.0))
            last["probation_s"] = float(e.get("probation_s", min(60.0, last["health_s"] / 2)))
            last["keep"] = int(e.get("keep", 2))
        elif step == "started":
            last["starts"] += 1
        elif step in ("refused", "failed", "rolled_back", "rolling_back"):
            last["reason"] = e.get("reason")
            last["message"] = e.get("message")
        if step in TERMINAL:
            last["outcome"] = step
            if step == "healthy" and last["from"]:
                previous = last["from"]  # a rollback leaves it: the one to go back to is still that one
    trial = None
    if last and last["outcome"] is None and last["phase"] in ("switched", "restarting", "started"):
        trial = last
    return {"last": last, "previous": previous, "trial": trial}


def recover(layout: "R.Layout", journal: Journal, locked: bool = False) -> dict:
    """Finish or undo what a power cut interrupted, so that every update is either not begun, on
    trial (switched, waiting for the health gate), or over. Returns the state afterwards.
    Under the update lock (`locked`: the caller holds it): an update another process is applying
    right now is not a power cut's leftover, and is left alone (the state as the journal has it)."""
    if not locked:
        try:
            with update_lock(layout):
                return recover(layout, journal, locked=True)
        except Busy:
            return state(journal.entries())
        except OSError:  # no right to make the lock (a read-only status, a read-only card): nothing to finish
            return state(journal.entries())
    tmp = os.path.join(layout.releases, ".current.tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    st = state(journal.entries())
    last = st["last"]
    if last and last["outcome"] is None:
        phase, version = last["phase"], last["version"]
        base = {"update": last["update"], "by": "launcher", "version": version}
        if phase == "switching" and version and R.current_version(layout) == version:
            journal.append({**base, "step": "switched", "previous": last["from"], "recovered": True})
        elif phase == "rolling_back":
            rollback(layout, journal, last, last["reason"] or "interrupted", last["message"] or "")
        elif phase in ("received", "verified", "installing", "installed", "switching"):
            left = ""
            if version and R.current_version(layout) != version:
                try:
                    R.remove_release(layout, version)
                except ValueError:
                    pass
                if os.path.lexists(layout.release_dir(version)):  # not ours to remove (root's)
                    left = (f"; {layout.release_dir(version)} could not be removed (not this user's): "
                            "the next update removes it")
            journal.append({**base, "step": "failed", "reason": "interrupted",
                            "message": f"the gateway stopped (power cut?) while the update was {phase}; "
                                       "the running release was not changed" + left})
        st = state(journal.entries())
    active = st["trial"]["update"] if st["trial"] else None
    try:
        for name in os.listdir(layout.update_dir):
            if name.startswith("staging-") and name != f"staging-{active}":
                import shutil
                shutil.rmtree(os.path.join(layout.update_dir, name), ignore_errors=True)
    except OSError:
        pass
    return st


def rollback(layout: "R.Layout", journal: Journal, trial: dict, reason: str, message: str) -> None:
    """Switch back to the release the trial replaced, journalled before and after."""
    base = {"update": trial["update"], "by": "launcher", "version": trial["version"]}
    journal.append({**base, "step": "rolling_back", "reason": reason, "message": message,
                    "to": trial["from"]})
    if trial["from"] and os.path.isdir(layout.release_dir(trial["from"])):
        R.switch(layout, trial["from"])
    journal.append({**base, "step": "rolled_back", "reason": reason, "message": message, "to": trial["from"]})


def wait_outcome(journal: Journal, uid: str, timeout: float, poll_s: float = 0.2) -> dict:
    """Wait for update `uid` to be over (healthy or rolled back); its outcome and reason."""
    deadline = time.monotonic() + timeout
    while True:
        st = state(journal.entries())
        last = st["last"]
        if last and last["update"] == uid and last["outcome"]:
            return {"outcome": last["outcome"], "reason": last["reason"], "message": last["message"]}
        if time.monotonic() > deadline:
            return {"outcome": "switched", "reason": "waiting", "message": "no outcome yet from the health gate"}
        time.sleep(poll_s)

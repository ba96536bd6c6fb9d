"""The launcher: what the unit's ExecStart= runs, and the part of an update no release can break.

    python3 /opt/community-gateway/launcher/launcher.py --install-root /opt/community-gateway \
        --data-dir /var/lib/community-gateway -- run -c /etc/community-gateway/gateway.toml

install.sh copies this file, journal.py and releases.py to <install_root>/launcher/, outside every
release, and the system python3 runs them (standard library only). At every start it

1. replays the step journal (journal.recover): an update a power cut interrupted is finished or undone;
2. if a release is on trial (switched to, not yet healthy): counts this start in the journal; past
   MAX_STARTS starts (it crashes on import, or on start) it switches `current` back to the previous
   release and starts that one instead;
3. on trial, forks the health gate (a watcher process beside the daemon): it asks the daemon's control
   socket for `status` until the daemon has reported `health.healthy` for the new release - every bus
   polled, the safety loop beating, the uplink online when one is configured - at every answer for the
   probation (probation_s; an unhealthy answer starts it again) and journals `healthy` (then removes
   all but the current and previous releases). A daemon that dies before that is a failed start: the
   next start is counted as in 2. If health_s passes first, it journals why,
   switches back and ends the daemon (SIGTERM) so that systemd's Restart=always starts the previous one;
4. exec()s `<install_root>/releases/current/bin/gateway` with the arguments after `--`: the daemon keeps
   the launcher's pid, so systemd's Type=notify, NotifyAccess=main and WatchdogSec= see the daemon.

With no `releases/current` (an install from before releases) it execs <install_root>/venv/bin/gateway."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time

if __package__:
    from . import journal as J
    from . import releases as R
else:  # /opt/community-gateway/launcher/launcher.py
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import journal as J  # type: ignore[no-redef]
    import releases as R  # type: ignore[no-redef]

POLL_S = 0.5
RUN_DIR_SOCKET = "/run/community-gateway/control.sock"


def choose(layout: "R.Layout", journal: "J.Journal") -> tuple[str, dict | None]:
    """The gateway executable to start, and the trial to watch (None: no update on trial)."""
    st = J.recover(layout, journal)
    trial = st["trial"]
    if trial is not None and R.current_version(layout) != trial["version"]:
        # current was moved by hand (install.sh re-run from a checkout, say): that choice stands, and
        # the trial is over without a switch
        journal.append({"update": trial["update"], "by": "launcher", "step": "rolled_back", "version": trial["version"],
                        "reason": "moved", "message": f"current was pointed at {R.current_version(layout)} by "
                                                      "hand during the trial", "to": R.current_version(layout)})
        trial = None
    if trial is not None:
        if trial["starts"] >= J.MAX_STARTS:
            J.rollback(layout, journal, trial, "crash",
                       f"{trial['version']} started {trial['starts']} times without becoming healthy "
                       f"(it crashes on start: journalctl -u community-gateway)")
            trial = None
        else:
            journal.append({"update": trial["update"], "by": "launcher", "step": "started",
                            "version": trial["version"], "attempt": trial["starts"] + 1})
    version = R.current_version(layout)
    legacy = os.path.join(layout.install_root, "venv", "bin", "gateway")
    if version is None:
        return legacy, None
    exe = layout.gateway_bin(version)
    if not os.path.exists(exe) and os.path.exists(legacy):  # current's directory removed by hand
        print(f"launcher: {exe} is missing; starting {legacy}", file=sys.stderr, flush=True)
        return legacy, None
    return exe, trial


def configured_socket(args: list[str]) -> str | None:
    """[gateway] control_socket of the config the daemon is started with (`-c FILE` after `--`), as the
    daemon resolves it (relative to the config file); None when it names none or cannot be read."""
    import tomllib

    path = None
    for i, a in enumerate(args):
        if a in ("-c", "--config") and i + 1 < len(args):
            path = args[i + 1]
        elif a.startswith("--config="):
            path = a.split("=", 1)[1]
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            sock = tomllib.load(f).get("gateway", {}).get("control_socket")
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(sock, str) or not sock:
        return None
    sock = os.path.expanduser(sock)
    return sock if os.path.isabs(sock) else os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), sock))


def socket_path(layout: "R.Layout", given: str | None) -> str:
    if given:
        return given
    local = os.path.join(layout.data_dir, "control.sock")
    if os.path.lexists(local):
        return local
    return RUN_DIR_SOCKET


def ask_status(path: str, timeout: float = 3.0) -> dict:
    """One `status` over the control socket (gateway/control/protocol.py: one JSON object per line)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(b'{"cmd": "status", "args": {}}\n')
        buf = b""
        while b"\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    reply = json.loads(buf.split(b"\n", 1)[0])
    if not reply.get("ok"):
        raise OSError(reply.get("error", "refused"))
    return reply["result"]


def watch(layout: "R.Layout", journal: "J.Journal", trial: dict, daemon_pid: int, sock: str | None,
          health_s: float | None = None) -> str:
    """The health gate for one start of a release on trial. Returns the outcome word."""
    limit = float(health_s if health_s is not None else trial["health_s"])
    probation = min(float(trial.get("probation_s", 0.0)), limit)
    t0 = time.monotonic()
    deadline = t0 + limit
    healthy_since = None  # the probation: healthy at every answer since then
    why = "the daemon never answered on its control socket"
    base = {"update": trial["update"], "by": "launcher", "version": trial["version"]}
    while time.monotonic() < deadline:
        try:
            os.kill(daemon_pid, 0)
        except ProcessLookupError:
            return "exited"  # the daemon died: the next start counts, and watches again
        try:
            st = ask_status(socket_path(layout, sock))
        except (OSError, ValueError) as e:
            why = f"no status from the daemon's control socket ({e})"
            healthy_since = None
        else:
            health = st.get("health") or {}
            if st.get("release", st.get("firmware")) != trial["version"]:
                why = f"the daemon answering is {st.get('release', st.get('firmware'))}, not {trial['version']}"
                healthy_since = None
            elif health.get("healthy"):
                now = time.monotonic()
                if healthy_since is None:
                    healthy_since = now
                if now - healthy_since < probation:
                    why = (f"healthy for {now - healthy_since:.1f} s of the {probation:g} s probation, "
                           "then the time was up")
                    time.sleep(POLL_S)
                    continue
                last = J.state(journal.entries())["last"]
                if last and last["update"] == trial["update"] and last["outcome"]:
                    return last["outcome"]
                journal.append({**base, "step": "healthy", "after_s": round(time.monotonic() - t0, 2),
                                "probation_s": probation, "previous": trial["from"]})
                gone = R.prune(layout, [trial["version"], trial["from"]], keep=trial.get("keep", 2))
                if gone:
                    journal.append({**base, "step": "pruned", "removed": sorted(gone)})
                return "healthy"
            else:
                why = "; ".join(health.get("problems") or ["not healthy"])
                healthy_since = None  # an unhealthy answer starts the probation again
        time.sleep(POLL_S)
    last = J.state(journal.entries())["last"]
    if last and last["update"] == trial["update"] and last["outcome"]:
        return last["outcome"]
    J.rollback(layout, journal, trial, "health", f"not healthy within {limit:g} s: {why}")
    _restart(layout, daemon_pid, trial["from"], sock)
    return "rolled_back"


def _restart(layout, pid: int, want: str | None, sock: str | None, grace_s: float = 30.0) -> None:
    """SIGUSR2: the daemon re-execs this launcher, which starts `current` (gateway/update/restart.py).
    A daemon too stuck to do it within grace_s is killed; systemd's Restart=always starts the launcher."""
    try:
        os.kill(pid, signal.SIGUSR2)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:
            if ask_status(socket_path(layout, sock), timeout=1.0).get("release") == want:
                return
        except (OSError, ValueError):
            pass
        time.sleep(POLL_S)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _spawn_watcher(layout, journal, trial, sock) -> None:
    """Fork the health gate twice over, so it is nobody's zombie; the daemon is this pid after exec."""
    daemon_pid = os.getpid()
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return
    try:
        if os.fork():
            os._exit(0)
        code = 0
        try:
            watch(layout, journal, trial, daemon_pid, sock)
        except BaseException as e:  # never take the daemon down with it
            print(f"launcher: health gate failed: {e}", file=sys.stderr, flush=True)
            code = 1
        os._exit(code)
    finally:
        os._exit(1)


def condition(layout: "R.Layout", journal: "J.Journal", args: list[str]) -> int:
    """ExecCondition=: `gateway check` by the release that will start. A release on trial whose check
    fails (it refuses the config, or cannot even import) is rolled back at once - a failing
    ExecCondition= skips the start and systemd never restarts a skipped unit, so waiting for the start
    counter would leave the box silent - and the previous release's check decides instead."""
    import subprocess

    st = J.recover(layout, journal)
    version = R.current_version(layout)
    exe = layout.gateway_bin(version) if version else os.path.join(layout.install_root, "venv", "bin", "gateway")
    try:
        done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)
        rc, out = done.returncode, (done.stdout or "") + (done.stderr or "")
    except (OSError, subprocess.TimeoutExpired) as e:
        rc, out = 1, str(e)
    trial = st["trial"]
    if rc != 0 and trial is not None and trial["version"] == version and trial["from"]:
        tail = " | ".join(line.strip() for line in out.strip().splitlines()[-3:])
        J.rollback(layout, journal, trial, "check", f"{version}: gateway check failed (exit {rc}): {tail}")
        return condition(layout, journal, args)
    sys.stdout.write(out)
    return rc if 0 <= rc < 255 else 1


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="launcher", description="starts the current community-gateway release")
    ap.add_argument("--install-root", default="/opt/community-gateway")
    ap.add_argument("--data-dir", default="/var/lib/community-gateway")
    ap.add_argument("--socket", default=None, help="the daemon's control socket (default: as the CLI finds it)")
    ap.add_argument("--condition", action="store_true",
                    help="ExecCondition=: run the starting release's `gateway check`, roll back a trial it fails")
    ap.add_argument("args", nargs=argparse.REMAINDER, help="-- then the gateway's arguments (run -c FILE)")
    a = ap.parse_args(argv)
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    layout = R.Layout(a.install_root, a.data_dir)
    journal = J.Journal(layout.journal_path)
    if a.condition:
        sys.exit(condition(layout, journal, args))
    try:
        exe, trial = choose(layout, journal)
    except OSError as e:  # a journal it cannot read or write must not keep the gateway from starting
        print(f"launcher: the update journal: {e}; starting the current release without a trial",
              file=sys.stderr, flush=True)
        version = R.current_version(layout)
        exe = layout.gateway_bin(version) if version else os.path.join(layout.install_root, "venv", "bin", "gateway")
        trial = None
    # for the daemon's SIGUSR2 restart after an update (gateway/update/restart.py): this command again
    me = [sys.executable, os.path.abspath(__file__), *(argv if argv is not None else sys.argv[1:])]
    os.environ["GATEWAY_LAUNCHER"] = json.dumps(me)
    if trial is not None:
        _spawn_watcher(layout, journal, trial, a.socket or configured_socket(args))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(exe, [exe, *args])


if __name__ == "__main__":
    main()

"""The platform's signed `update` command on the gateway: one download at a time, on its own thread,
that survives a restart, then the hand-over to gateway.update.apply.apply_bundle.

    accepted   the command (verified like every other: signature, nonce, window) names an https URL,
               the bundle's sha256 and size; refused without [updates], without a pinned uplink CA, over
               [updates] download_max_mb, or while another update is downloading
    job        <data_dir>/update-fetch/job.json (written atomically): what was accepted, so that after a
               kill -9 or a power cut the next start resumes it (audit "resumed")
    download   fetch.py, retried with a growing pause (1 s .. 30 s) while bytes keep coming; given up
               after MAX_FRUITLESS attempts in a row that brought nothing (the part is kept: the same
               bundle, sent again, resumes it)
    hand-over  the job is removed first (a restart then never installs twice), then apply_bundle with
               expect_sha256; its steps are journalled and the daemon audits the journal
               (gateway/update/audit.py, actor "platform:<command id>"); its "restarting" step sends
               the final reply

Nothing here runs on the safety loop or the uplink thread: `start` only checks and writes the job; the
thread talks to the network with a socket timeout and to the daemon through `audit` and `reply`."""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from gateway.errors import CommandError, GatewayError

from .fetch import RETRYABLE, PartFile, check_room, check_url, fetch

log = logging.getLogger("gateway.update")
MAX_FRUITLESS = 6  # attempts in a row that brought no byte
PAUSES_S = (1, 2, 4, 8, 16, 30)
PROGRESS_STEPS = 4  # a reply and an audit event at 25 %, 50 %, 75 % (a metered SIM pays for each)
MORE_TO_COME = ("downloading", "downloaded", "installing")  # reply result.state values a final one follows
FINAL_REMOVES_PART = ("sha256_mismatch", "size_mismatch", "too_large")


class RemoteUpdate:
    """The gateway's one platform-driven update. `daemon`: `.cfg` (the running Config). `audit(fields)`,
    `reply(dict)`: as CommandHandler's. `ready() -> bool`: the daemon is up (a resumed job waits for it,
    at most ready_wait_s). `apply`: apply_bundle's signature (default gateway.update.apply.apply_bundle)."""

    def __init__(self, daemon, *, audit, reply, ready=lambda: True, apply=None, timeout_s: float = 30.0,
                 pauses_s=PAUSES_S, ready_wait_s: float = 300.0):
        self.daemon = daemon
        self.audit = audit
        self.reply = reply
        self.ready = ready
        self.apply = apply
        self.timeout_s = timeout_s
        self.pauses_s = tuple(pauses_s)
        self.ready_wait_s = ready_wait_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.last: dict | None = None  # the last outcome, for status

    # -- where --------------------------------------------------------------------------------
    @property
    def dir(self) -> str:
        return os.path.join(self.daemon.cfg.gateway.data_dir, "update-fetch")

    @property
    def job_path(self) -> str:
        return os.path.join(self.dir, "job.json")

    # -- accept -------------------------------------------------------------------------------
    def start(self, command_id: str, args: dict) -> dict:
        """Check an accepted `update` command and start its download. Raises CommandError (nothing
        written then)."""
        cfg = self.daemon.cfg
        if cfg.updates is None:
            raise CommandError("unavailable", "this gateway accepts no update: its config has no [updates] table")
        check_url(args["url"])
        max_bytes = int(cfg.updates.download_max_mb * 1024 * 1024)
        if args["size"] > max_bytes:
            raise CommandError("too_large", f"the bundle is {args['size']} bytes; this gateway accepts at most "
                                            f"{max_bytes} ([updates] download_max_mb = {cfg.updates.download_max_mb:g})")
        self._context()  # no pinned CA: refused now, not in a thread later
        part = PartFile(self.dir, args["sha256"])
        check_room(part, args["size"] - part.durable_length())
        job = {"command_id": command_id, "url": args["url"], "sha256": args["sha256"], "size": args["size"],
               "version": args.get("version"), "accepted": time.time()}
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                raise CommandError("busy", "an update is downloading or being applied; wait for its outcome")
            self._write_job(job)
            self._spawn(job, resumed=False)
        return {"state": "downloading", "size": job["size"], "sha256": job["sha256"],
                "resumed_from": PartFile(self.dir, job["sha256"]).durable_length(), "stall_s": self.stall_s}

    @property
    def stall_s(self) -> float:
        """The longest the platform may hear nothing while the download goes on (a retry's pauses,
        socket timeouts, one quarter of the file): `gateway-platform send` waits this long per reply."""
        return float(sum(self.pauses_s) + self.timeout_s * (len(self.pauses_s) + 1) + 600)

    def resume_pending(self) -> bool:
        """At the daemon's start: an accepted download cut short by a stop, a crash or a power cut goes on
        (once the daemon is up). True if one was found."""
        try:
            with open(self.job_path, encoding="utf-8") as f:
                job = json.load(f)
            for k in ("command_id", "url", "sha256", "size"):
                job[k]  # noqa: B018 - a job without them is not ours to guess at
        except FileNotFoundError:
            self._clean_leftovers(None)
            return False
        except (OSError, ValueError, KeyError, TypeError) as e:
            log.error("update job %s unreadable (%s): moved aside", self.job_path, e)
            _move_aside(self.job_path)
            return False
        self._clean_leftovers(job["sha256"])
        with self._lock:
            self._spawn(job, resumed=True)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """The daemon is going away: the download stops at its next chunk, its bytes and job kept."""
        self._stop.set()
        t = self._thread
        if t is not None:
            t.join(timeout)

    # -- the thread -----------------------------------------------------------------------------
    def _spawn(self, job: dict, resumed: bool) -> None:
        self._thread = threading.Thread(target=self._run, args=(job, resumed), name="update-fetch", daemon=True)
        self._thread.start()

    def _run(self, job: dict, resumed: bool) -> None:
        try:
            self._run_job(job, resumed)
        except Exception as e:  # noqa: BLE001 - the platform gets an answer, the daemon keeps running
            log.exception("update %s: internal error", job.get("command_id"))
            self._final(job, False, "internal", f"internal error (logged on the gateway): {type(e).__name__}")

    def _run_job(self, job: dict, resumed: bool) -> None:
        part = PartFile(self.dir, job["sha256"])
        if resumed:
            # after the daemon's start: before it the outbox takes no audit event
            deadline = time.monotonic() + self.ready_wait_s
            while not self.ready() and time.monotonic() < deadline:
                if self._stop.wait(0.5):
                    return
            if self.daemon.cfg.updates is None:
                self._drop_job(job, remove_part=True)
                self._final(job, False, "unavailable", "the config has no [updates] table any more: the "
                                                       "interrupted download is abandoned")
                return
            self._audit(job, "resumed", from_byte=part.durable_length())
        reported = {"step": part.durable_length() * PROGRESS_STEPS // job["size"]}

        def progress(received, size, resumed_from):
            step = received * PROGRESS_STEPS // size
            if step > reported["step"] and received < size:
                reported["step"] = step
                self._audit(job, "downloading", received=received)
                self._reply(job, True, f"downloading: {received} of {size} bytes", state="downloading",
                            received=received, size=size)

        fruitless = 0
        while True:
            if self.daemon.cfg.updates is None:  # a reload took [updates] away meanwhile
                self._drop_job(job, remove_part=True)
                self._final(job, False, "unavailable", "the config has no [updates] table any more: download "
                                                       "abandoned")
                return
            before = part.durable_length()
            try:
                path = fetch(job["url"], job["sha256"], job["size"], part, self._context(),
                             max_bytes=int(self.daemon.cfg.updates.download_max_mb * 1024 * 1024),
                             timeout_s=self.timeout_s, progress=progress, stop=self._stop)
                break
            except CommandError as e:
                if e.reason == "stopped":
                    log.warning("update %s: download stopped at byte %d; it resumes at the next start",
                                job["command_id"], part.durable_length())
                    return
                if e.reason not in RETRYABLE:
                    if e.reason in FINAL_REMOVES_PART:
                        part.remove()
                    self._drop_job(job)
                    self._final(job, False, e.reason, e.message)
                    return
                fruitless = 0 if part.durable_length() > before else fruitless + 1
                if fruitless >= MAX_FRUITLESS:
                    self._drop_job(job)
                    self._final(job, False, e.reason, f"{e.message}; gave up after {fruitless} attempts without "
                                                      f"progress ({part.durable_length()} bytes kept: the same bundle "
                                                      "sent again resumes)")
                    return
                pause = self.pauses_s[min(fruitless, len(self.pauses_s) - 1)]
                log.warning("update %s: %s; trying again in %g s", job["command_id"], e.message, pause)
                self._audit(job, "retrying", reason=e.reason, received=part.durable_length(), detail=e.message[:300])
                if self._stop.wait(pause):
                    return
        self._audit(job, "downloaded", received=job["size"])
        from gateway.update.install import INSTALL_TIMEOUT_S

        # the install may take minutes on a Pi: the platform waits that long for the next reply
        self._reply(job, True, f"downloaded {job['size']} bytes, sha256 checked; applying", state="downloaded",
                    stall_s=float(INSTALL_TIMEOUT_S + 300))
        self._hand_over(job, path)

    def _hand_over(self, job: dict, path: str) -> None:
        cfg = self.daemon.cfg
        self._drop_job(job)  # from here on apply_bundle's journal is the record: a restart never installs twice
        sent = {"final": False}

        def on_step(step: dict) -> None:
            # each step is journalled, and the daemon audits the journal (gateway/update/audit.py: actor
            # "platform:<command id>"); here only the reply that must leave before the restart
            name = step.get("step")
            if name == "restarting":  # the last moment this process is sure to be alive
                sent["final"] = True
                self._final(job, True, None, f"release {step.get('version')} installed and switched to; "
                                             "restarting (the health gate's outcome follows in the audit events "
                                             "and `gateway status`)", state="restarting", version=step.get("version"),
                            update=step.get("update"))

        try:
            apply = self.apply
            if apply is None:
                from gateway.update.apply import apply_bundle as apply
            result = apply(path, data_dir=cfg.gateway.data_dir, install_root=cfg.updates.install_root,
                           release_keys=list(cfg.updates.release_keys), by=f"platform:{job['command_id']}",
                           expect_sha256=job["sha256"], on_step=on_step, health_s=cfg.updates.health_s, probation_s=cfg.updates.probation_s,
                           keep=cfg.updates.keep)
        except GatewayError as e:
            _remove(path)  # refused: the running release is untouched and the bytes are of no use
            self._final(job, False, getattr(e, "reason", "failed"), getattr(e, "message", str(e)))
            return
        except BaseException:
            _remove(path)
            raise
        _remove(path)
        if not sent["final"]:
            self._final(job, True, None, f"update {result.get('outcome')}", state=result.get("outcome"), **result)

    # -- records --------------------------------------------------------------------------------
    def _context(self):
        from gateway.sync.tls import tls_context

        up = self.daemon.cfg.uplink
        if up is None or up.tls is None or not up.tls.ca:
            raise CommandError("no_pin", "the download server is pinned by the uplink's CA ([uplink.tls] ca) and "
                                         "this gateway has none: no download without a pinned CA")
        try:
            return tls_context(up.tls)
        except GatewayError as e:
            raise CommandError("tls", str(e)) from None

    def _write_job(self, job: dict) -> None:
        from gateway.commands.atomic import write_atomic

        os.makedirs(self.dir, exist_ok=True)
        try:
            write_atomic(self.job_path, json.dumps(job).encode(), mode=0o600)
        except OSError as e:
            raise CommandError("failed", f"cannot write {self.job_path}: {e}") from None

    def _drop_job(self, job: dict, remove_part: bool = False) -> None:
        _remove(self.job_path)
        if remove_part:
            PartFile(self.dir, job["sha256"]).remove()

    def _clean_leftovers(self, keep_sha: str | None) -> None:
        """Bundles handed over before a restart (apply_bundle's journal has them now), parts of other
        bundles: not needed any more."""
        try:
            names = os.listdir(self.dir)
        except OSError:
            return
        for name in names:
            if name.startswith(f"{keep_sha}."):
                continue  # the job's own part, or its complete bundle (stopped before the hand-over)
            if name.endswith((".bundle", ".part", ".part.len")):
                _remove(os.path.join(self.dir, name))

    def _audit(self, job: dict, outcome: str, **extra) -> None:
        fields = {"action": "update", "actor": "platform", "by": "platform", "result": outcome, "outcome": outcome,
                  "command": "update", "command_id": job["command_id"], "url": job["url"], "sha256": job["sha256"],
                  "size": job["size"], **({"version": job["version"]} if job.get("version") else {}), **extra}
        try:
            self.audit(fields)
        except (GatewayError, OSError) as e:
            log.error("audit event for update %s not recorded: %s", job["command_id"], e)

    def _reply(self, job: dict, ok: bool, message: str, error: str | None = None, **result) -> None:
        reply = {"id": job["command_id"], "command": "update", "ok": ok, "message": message,
                 "result": {"sha256": job["sha256"], **result}}
        if not ok:
            reply["error"] = error
        try:
            self.reply(reply)
        except (GatewayError, OSError, TypeError, ValueError) as e:
            log.error("reply to update %s not sent: %s", job["command_id"], e)

    def _final(self, job: dict, ok: bool, error: str | None, message: str, **result) -> None:
        outcome = result.get("state") if ok else "failed"
        self.last = {"command_id": job["command_id"], "version": job.get("version"), "ok": ok,
                     "outcome": outcome, "error": error, "message": message[:500], "at": round(time.time(), 3)}
        try:  # for `gateway status`, across a restart (download_status)
            from gateway.commands.atomic import write_atomic

            os.makedirs(self.dir, exist_ok=True)
            write_atomic(os.path.join(self.dir, "last.json"), json.dumps(self.last).encode(), mode=0o600)
        except OSError as e:
            log.error("cannot record the update's outcome in %s: %s", self.dir, e)
        (log.warning if ok else log.error)("update %s: %s", job["command_id"], message)
        self._audit(job, outcome or "done", reason=error, detail=message[:500])
        self._reply(job, ok, message, error, **({"state": "failed"} if not ok else result))


def download_status(data_dir: str) -> dict:
    """What `gateway status` shows of the platform's update: the download in progress (`downloading`:
    command id, version, bytes written so far of size) and the last one's outcome (`last`). Read from the
    files alone, so any process may ask."""
    d = os.path.join(data_dir, "update-fetch")
    out: dict = {}
    try:
        with open(os.path.join(d, "job.json"), encoding="utf-8") as f:
            job = json.load(f)
        part = PartFile(d, job["sha256"])
        try:
            received = os.path.getsize(part.path)  # written so far (fsynced: every 4 MiB)
        except OSError:
            received = job["size"] if os.path.exists(part.done_path) else 0
        out["downloading"] = {"command_id": job["command_id"], "version": job.get("version"), "size": job["size"],
                              "received": received}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        with open(os.path.join(d, "last.json"), encoding="utf-8") as f:
            out["last"] = json.load(f)
    except (OSError, ValueError):
        pass
    return out


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        log.error("cannot remove %s: %s", path, e)


def _move_aside(path: str) -> None:
    try:
        os.replace(path, f"{path}.bad-{int(time.time())}")
    except OSError:
        _remove(path)

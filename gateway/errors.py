"""One error family. Messages are written for the technician who reads them."""


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError, ValueError):
    """The configuration (or a profile) is invalid. `problems` holds every finding."""

    def __init__(self, problems):
        if isinstance(problems, str):
            problems = [problems]
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class BusError(GatewayError, OSError):
    """The transport itself failed: port missing or vanished, connection refused.
    Every device on the bus is affected."""


class DeviceFault(GatewayError):
    """One transaction with one device failed. `reason` is a short machine word:
    the Modbus frame faults of drivers.modbus.FRAME_FAULTS (timeout, short, tid, protocol,
    mbap-length, unit, function, bytecount, crc, trailing, exception), range, decode, frame."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class OutputError(GatewayError):
    """A GPIO output or input could not be driven or read."""


class OutboxError(GatewayError):
    """The durable outbox could not store or read events (disk full, unwritable)."""


class UplinkError(GatewayError):
    """The MQTT uplink is misconfigured or refused (TLS, credentials)."""


class ControlError(GatewayError):
    """The control socket between the CLI and the running daemon failed: daemon not running,
    permission denied, no answer in time, or the daemon refused the request."""


class CommandError(GatewayError):
    """A command from the platform was refused or could not be carried out. `reason` is a short
    machine word for the reply's `error` field (docs/commands.md lists them); the message is for
    the operator who reads the reply."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")


def os_reason(e: BaseException) -> str:
    """An OS-level error's reason, said once. pyserial's `[Errno 2] could not open port /dev/x: [Errno 2]
    No such file or directory: '/dev/x'` becomes `No such file or directory` (our own sentence names
    the port already)."""
    import re

    text = e.strerror if isinstance(getattr(e, "strerror", None), str) else str(e)
    text = re.sub(r"\[Errno \d+\]\s*", "", text)
    text = re.sub(r"^could not open port \S+?: ", "", text)
    return re.sub(r":\s*'[^']*'$", "", text).strip() or type(e).__name__


class UpdateError(GatewayError):
    """A release bundle was refused, or applying it failed and was undone. `reason` is a short word
    (signature, sha256, truncated, version, downgrade, no_updates, install, disk_full, health, crash,
    ...; docs/updates.md lists them) for the audit event and the platform's reply; the message is for
    the technician."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        self.message = message
        super().__init__(f"{reason}: {message}")

    def __str__(self) -> str:
        return self.message

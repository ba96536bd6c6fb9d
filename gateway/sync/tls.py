"""The uplink's TLS context: the configured CA only (pinning), the broker's host name checked, an
optional client certificate (mTLS). A failure here is an error, never a reason to go plaintext."""

from __future__ import annotations

import ssl
import time

from gateway.config.model import Tls
from gateway.errors import UplinkError


def tls_context(tls: Tls) -> ssl.SSLContext:
    try:
        # with a cafile, only that CA is trusted; without one, the system store
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.ca)
        if tls.cert:
            ctx.load_cert_chain(tls.cert, tls.key)
    except (OSError, ssl.SSLError) as e:
        err = UplinkError(f"TLS files unusable (ca={tls.ca}, cert={tls.cert}, key={tls.key}): {e}")
        err.kind = "tls_error"
        raise err from e
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def certificate_expiry(path: str) -> dict:
    """When the client certificate stops being valid, for `gateway status` and a warning in advance."""
    from cryptography import x509

    try:
        with open(path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError) as e:
        return {"file": path, "error": str(e)}
    not_after = cert.not_valid_after_utc
    days = (not_after.timestamp() - time.time()) / 86400
    return {"file": path, "not_after": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"), "days_left": round(days, 1)}

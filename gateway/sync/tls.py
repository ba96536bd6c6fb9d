"""The uplink's TLS context: the configured CA only (pinning), the broker's host name checked, an
optional client certificate (mTLS). A failure here is an error, never a reason to go plaintext."""

from __future__ import annotations

import ssl

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

"""Release version numbers: the PEP 440 public versions a release uses (N[.N]*[{a|b|rc}N][.postN][.devN]),
compared as PEP 440 orders them. Written here (not `packaging`) because the launcher's side of the update
must not depend on anything a release brings, and the gateway has no `packaging` dependency."""

from __future__ import annotations

import re

from gateway.errors import UpdateError

_RE = re.compile(r"^(\d+(?:\.\d+)*)(?:(a|b|rc)(\d+))?(?:\.post(\d+))?(?:\.dev(\d+))?$")
_PRE = {"a": 0, "b": 1, "rc": 2}


def parse(text: str) -> tuple:
    """A sort key for `text`; raises UpdateError(reason "version") for anything else."""
    m = _RE.match(text or "")
    if not m:
        raise UpdateError("version", f"'{text}' is not a release version (like 1.4.2 or 1.5.0rc1)")
    rel, pre, pre_n, post, dev = m.groups()
    parts = [int(x) for x in rel.split(".")]
    while len(parts) > 1 and parts[-1] == 0:  # 1.0 == 1.0.0
        parts.pop()
    # PEP 440: 1.0.dev1 < 1.0a1 < 1.0 < 1.0.post1
    if pre is not None:
        pre_key = (_PRE[pre], int(pre_n))
    elif dev is not None and post is None:
        pre_key = (-1, 0)
    else:
        pre_key = (3, 0)
    post_key = int(post) if post is not None else -1
    dev_key = int(dev) if dev is not None else float("inf")
    return (tuple(parts), pre_key, post_key, dev_key)


def valid(text: str) -> bool:
    return bool(_RE.match(text or ""))


def compare(a: str, b: str) -> int:
    ka, kb = parse(a), parse(b)
    return (ka > kb) - (ka < kb)

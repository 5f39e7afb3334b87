"""The one way labkit quotes what reaches a remote shell: every path, name and value."""
from __future__ import annotations

import shlex


def quote(*parts) -> str:
    """Each part quoted for sh and joined by spaces: quote("a b", 5) -> "'a b' 5"."""
    return " ".join(shlex.quote(str(p)) for p in parts)

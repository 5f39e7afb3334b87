"""What labkit's content step last wrote into each PV directory (scripts/write-content keeps a
copy outside the served directories), read on the NFS server."""
from __future__ import annotations

import base64
import binascii

from labkit.errors import OperationError
from labkit.facts.base import Fact, FactResult
from labkit.shell import quote

RECORDS = "/var/lib/labkit/content"


class WrittenContent(Fact):
    """-> {PV directory (local path on the NFS server): content labkit last wrote there}; {} when it
    never wrote any. One record per line, base64, so any content survives the batch output."""

    sudo = True

    def __init__(self, directory: str = RECORDS):
        self.directory = directory

    def build(self) -> str:
        d = quote(self.directory)
        return f'for f in {d}/*; do [ -f "$f" ] && base64 -w0 "$f" && echo; done; true'

    def process(self, result: FactResult) -> dict[str, str]:
        out = {}
        for line in result.stdout.split():
            try:
                text = base64.b64decode(line, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError) as exc:
                raise OperationError(f"a content record in {self.directory} is damaged ({exc}): remove it "
                                     "and run `invoke deploy` (it writes the content again)") from None
            directory, _, content = text.partition("\n")
            out[directory] = content
        return out

"""The PV directories on the NFS server: what each one holds now (``PVDirectories``) and what
labkit's content step last wrote there (``WrittenContent``: scripts/write-content keeps a copy
outside the served directories)."""
from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from labkit import validate
from labkit.errors import OperationError
from labkit.facts.base import Fact, FactResult
from labkit.shell import quote

RECORDS = "/var/lib/labkit/content"


class WrittenContent(Fact):
    """-> {PV directory (local path on the NFS server): content labkit last wrote there}; {} when it
    never wrote any. One record per line, base64, so any content survives the batch output."""

    sudo = True

    def __init__(self, directory: str | None = None):
        self.directory = directory or RECORDS

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


@dataclass(frozen=True)
class PVDirectory:
    """What one PV directory on the NFS server holds.

    ``state``: ``page`` (index.html is a regular file: ``mode``, ``content``), ``empty`` (no
    index.html), ``not a file`` (index.html is a symlink, a directory ...), ``missing`` (no such
    directory), ``outside`` (the directory resolves to ``real``, outside the export)."""

    state: str
    real: str | None = None
    mode: str | None = None
    content: str | None = None


class PVDirectories(Fact):
    """-> {directory: PVDirectory} for the PV directories labkit writes pages into (local paths
    on the NFS server, inside ``export``). One line per directory, tab-separated, the page base64."""

    sudo = True
    ok_exit_codes = (0, 3)  # 3: the export itself is missing

    def __init__(self, export: str, directories: tuple[str, ...] | list[str]):
        self.export = validate.abs_path(export)
        self.directories = tuple(validate.abs_path(d) for d in directories)

    def build(self) -> str:
        # the directory is printed as labkit named it (validated: no tabs or newlines); symlinks
        # are resolved (pwd -P) so a directory pointing out of the export is seen as such
        dirs = " ".join(quote(d) for d in self.directories)
        return (f"top=$(cd {quote(self.export)} && pwd -P) || exit 3\n"
                f"for d in {dirs}; do\n"
                '  if ! real=$(cd "$d" 2>/dev/null && pwd -P); then printf \'%s\\tmissing\\n\' "$d"; continue; fi\n'
                '  case "$real/" in "$top"/?*) ;; *) printf \'%s\\toutside\\t%s\\n\' "$d" "$real"; continue ;; esac\n'
                '  f=$real/index.html\n'
                '  if [ -L "$f" ] || { [ -e "$f" ] && [ ! -f "$f" ]; }; then printf \'%s\\tnot a file\\t%s\\n\' "$d" "$real"\n'
                '  elif [ ! -e "$f" ]; then printf \'%s\\tempty\\t%s\\n\' "$d" "$real"\n'
                '  else printf \'%s\\tpage\\t%s\\t%s\\t\' "$d" "$real" "$(stat -c %a "$f")"; base64 -w0 "$f"; echo; fi\n'
                'done')

    def process(self, result: FactResult) -> dict[str, PVDirectory]:
        if result.exited == 3:
            raise OperationError(f"the export {self.export} does not exist on the NFS server: run invoke setup-nfs")
        out: dict[str, PVDirectory] = {}
        for line in result.stdout.splitlines():
            if not line.strip():
                continue
            directory, state, *rest = line.split("\t")
            if state == "page":
                real, mode, b64 = rest
                try:
                    text = base64.b64decode(b64, validate=True).decode()
                except (binascii.Error, UnicodeDecodeError):
                    text = None  # not text labkit wrote: a page to replace (or keep), never to show
                out[directory] = PVDirectory(state, real, mode, text)
            else:
                out[directory] = PVDirectory(state, rest[0] if rest else None)
        for d in self.directories:
            if d not in out:
                raise OperationError(f"the NFS server did not report the PV directory {d}")
        return out

"""Unit tests run scripts/write-content locally: its records of what it wrote go to a temporary
directory, never to this machine's /var/lib/labkit (which the twin's hosts would see through
their overlay roots). The script and the WrittenContent fact both take the place from
``labkit.facts.content.RECORDS``."""
import pytest

from labkit.facts import content


@pytest.fixture(autouse=True)
def content_records(tmp_path, monkeypatch):
    path = tmp_path / "content-records"
    monkeypatch.setattr(content, "RECORDS", str(path))
    return path

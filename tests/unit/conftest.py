"""Unit tests run scripts/write-content locally: its records of what it wrote go to a temporary
directory, never to this machine's /var/lib/labkit (which the twin's hosts would see through
their overlay roots)."""
import pytest


@pytest.fixture(autouse=True)
def content_records(tmp_path, monkeypatch):
    path = tmp_path / "content-records"
    monkeypatch.setenv("LABKIT_CONTENT_RECORDS", str(path))
    return path

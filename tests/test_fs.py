"""Atomic file replacement: a reader or a crash sees the old file or the new one, never a torn one."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ael import fs
from ael.fs import TEMP_PREFIX, TEMP_SUFFIX, remove_stale_temps, write_atomic


def _temps(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"{TEMP_PREFIX}*"))


def test_bytes_text_and_a_writer_function(tmp_path):
    path = tmp_path / "a.bin"
    assert write_atomic(path, b"\x00\x01") == path and path.read_bytes() == b"\x00\x01"
    write_atomic(str(path), "é\n")
    assert path.read_bytes() == "é\n".encode()
    write_atomic(path, "é", encoding="latin-1")
    assert path.read_bytes() == b"\xe9"
    write_atomic(path, lambda f: (f.write(b"ab"), f.write(b"cd")))
    assert path.read_bytes() == b"abcd"
    assert _temps(tmp_path) == []


def test_old_content_survives_a_failure_mid_write(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text('{"old": true}')

    def half_then_fail(f):
        f.write(b'{"new": tr')
        f.flush()
        raise RuntimeError("disk full, say")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(path, half_then_fail)
    assert path.read_text() == '{"old": true}'
    assert _temps(tmp_path) == []  # the temp file is removed
    with pytest.raises(KeyboardInterrupt):  # an interrupt too
        write_atomic(path, lambda f: (f.write(b"x"), (_ for _ in ()).throw(KeyboardInterrupt())))
    assert path.read_text() == '{"old": true}' and _temps(tmp_path) == []


def test_a_failed_first_write_leaves_no_file(tmp_path):
    with pytest.raises(ValueError):
        write_atomic(tmp_path / "new.txt", lambda f: (_ for _ in ()).throw(ValueError("bad")))
    assert list(tmp_path.iterdir()) == []


def test_old_content_survives_a_process_killed_mid_write(tmp_path):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"old checkpoint")
    script = (
        "import os, signal, sys\n"
        "from ael.fs import write_atomic\n"
        "def half(f):\n"
        "    f.write(b'new check'); f.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "write_atomic(sys.argv[1], half)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, timeout=60)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert path.read_bytes() == b"old checkpoint"
    (left,) = _temps(tmp_path)  # what the killed write left: a temp file, matched by both patterns
    assert left.name.startswith(f"{TEMP_PREFIX}ckpt.pt.") and left.name.endswith(TEMP_SUFFIX)
    assert remove_stale_temps(tmp_path) == [left]
    assert sorted(tmp_path.iterdir()) == [path]
    assert remove_stale_temps(tmp_path / "missing") == []


def test_the_new_file_has_the_umask_permissions_and_replaces_a_read_only_one(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_atomic(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    path.chmod(0o444)
    write_atomic(path, "y")  # replaced by rename, as a new file
    assert path.read_text() == "y"


def test_the_rename_is_made_durable(tmp_path, monkeypatch):
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(fs.os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    write_atomic(tmp_path / "f.txt", "x")
    assert len(synced) == (2 if os.name == "posix" else 1)  # the file, then its folder


def test_a_folder_that_cannot_be_fsynced_is_not_an_error(tmp_path, monkeypatch):
    real = os.fsync
    calls = []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:  # the folder's
            raise OSError(22, "Invalid argument")
        return real(fd)

    monkeypatch.setattr(fs.os, "fsync", fsync)
    assert write_atomic(tmp_path / "f.txt", "x").read_text() == "x"


def test_concurrent_writers_never_tear_the_file(tmp_path):
    path = tmp_path / "shared.txt"
    contents = [bytes([65 + i]) * 50_000 for i in range(4)]
    errors = []

    def writer(content: bytes) -> None:
        try:
            for _ in range(5):
                write_atomic(path, content)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(c,)) for c in contents]
    for t in threads:
        t.start()
    seen = set()
    while any(t.is_alive() for t in threads):
        if path.exists():
            seen.add(path.read_bytes())
    for t in threads:
        t.join()
    assert not errors
    assert seen <= set(contents) and path.read_bytes() in contents
    assert _temps(tmp_path) == []

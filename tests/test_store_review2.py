"""Reading a store leaves nothing behind that a later writer trips over (second review of the store)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from bastion.store import Store

UID = 65534  # the user the reads run as when the tests run as root


def _as_user(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run Python `code` (argv: ['-c', *args]) as a user who does not own the store when the tests run as root."""
    cmd = [sys.executable, "-c", code, *args]
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: cannot drop privileges")
        cmd = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(
                              x for x in (os.environ.get("PYTHONPATH"), str(Path(__file__).resolve().parents[1]))
                              if x)})


_READ = ("import sys; from bastion.store import Store\n"
         "st = Store(sys.argv[1], readonly=True); print(len(st.list_runs())); st.close()")
_WRITE = ("import sys; from bastion.store import Store\n"
          "st = Store(sys.argv[1]); st.create_run('guard', {}, 0, {}); print(len(st.list_runs())); st.close()")


def test_reading_a_read_only_file_in_a_writable_folder_leaves_no_wal_files():
    base = Path(tempfile.mkdtemp(prefix="bastion-ro2-"))  # outside pytest's private tmp dir: the user can enter
    try:
        base.chmod(0o755)
        folder = base / "u"
        folder.mkdir()
        db = folder / "a.db"
        with Store(db) as st:
            st.create_run("guard", {"campaign": "test"}, 0, {"bastion": "test"})
        if os.geteuid() == 0:
            for p in (folder, db):
                os.chown(p, UID, UID)
        db.chmod(0o444)
        assert sorted(p.name for p in folder.iterdir()) == ["a.db"]
        r = _as_user(_READ, str(db))
        assert r.returncode == 0 and r.stdout.strip() == "1", r.stderr
        # a mode=ro connection left r--r--r-- a.db-shm and a.db-wal here, and the next writer failed on them
        assert sorted(p.name for p in folder.iterdir()) == ["a.db"]
        db.chmod(0o644)
        r = _as_user(_WRITE, str(db))
        assert r.returncode == 0 and r.stdout.strip() == "2", r.stderr
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_read_only_file_with_a_write_ahead_log_is_read_through_it():
    """With -wal/-shm present (a writer has the store open, or was killed), the read sees the logged changes."""
    base = Path(tempfile.mkdtemp(prefix="bastion-ro2-"))
    db = base / "w.db"
    with Store(db) as st:
        st.create_run("guard", {}, 0, {})
    writer = Store(db)  # stays open: its -wal holds the second run, not yet in the main file
    try:
        base.chmod(0o755)
        writer._con.execute("PRAGMA wal_autocheckpoint=0")
        writer.create_run("guard", {}, 0, {})
        assert Path(str(db) + "-wal").stat().st_size > 0
        db.chmod(0o444)
        if os.geteuid() == 0:
            for p in (base, *base.iterdir()):
                os.chown(p, UID, UID)
        r = _as_user(_READ, str(db))
        assert r.returncode == 0 and r.stdout.strip() == "2", r.stderr
    finally:
        writer.close()
        shutil.rmtree(base, ignore_errors=True)

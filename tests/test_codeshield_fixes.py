"""Code-shield regressions from the review: byte-exact `fix --write` on files that are not UTF-8, files named
explicitly that cannot be scanned, a password-hash patch that can be verified, and short snippets without
a language tag."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from typer.testing import CliRunner

from bastion.codeshield import fix_code, languages, scan_code, scan_path, scan_response, scan_text
from bastion.codeshield.scanner import MAX_FILE_BYTES, SkippedFile


@pytest.fixture
def cli():
    from bastion.cli.main import app

    runner = CliRunner()
    return lambda *args, input=None: runner.invoke(app, list(args), input=input)


# ---- finding 1: fix --write changes nothing but the patch ------------------------------------------------
def test_fix_write_keeps_non_utf8_bytes_exactly(cli, tmp_path) -> None:
    before = b"# caf\xe9 \xff\xfe\r\nimport yaml\ndef load(s):\n    return yaml.load(s)  # na\xefve\n"
    src = tmp_path / "latin.py"
    src.write_bytes(before)
    r = cli("code", "fix", str(src), "--write")
    assert r.exit_code == 0, r.output
    assert src.read_bytes() == before.replace(b"yaml.load(s)", b"yaml.safe_load(s)")


def test_fix_keeps_non_utf8_bytes_inside_the_patched_code(tmp_path) -> None:
    from bastion.codeshield.scanner import decode_source, encode_source

    raw = b'<?php\n$h = md5($password . "\xe9");\n'  # the fixer copies the argument's text into the patch
    r = fix_code(decode_source(raw), "php")
    assert r.applied and encode_source(r.fixed) == b'<?php\n$h = password_hash($password . "\xe9", PASSWORD_DEFAULT);\n'


def test_fix_stdin_diff_keeps_the_input_bytes(cli) -> None:
    r = cli("code", "fix", "-", "--lang", "python", input=b"# caf\xe9\nimport yaml\nx = yaml.load(s)\n")
    assert r.exit_code == 0, r.output
    assert b" # caf\xe9\n" in r.stdout_bytes and b"+x = yaml.safe_load(s)\n" in r.stdout_bytes


# ---- finding 9: a file named explicitly that is not scanned is an error, not "clean" -----------------------
def test_named_file_that_cannot_be_scanned_is_reported(cli, tmp_path) -> None:
    big = tmp_path / "big.py"
    big.write_bytes(b"import os\nos.system('rm ' + f)\n" + b"#" * MAX_FILE_BYTES)
    utf16 = tmp_path / "u16.py"
    utf16.write_bytes("import os\nos.system('rm ' + f)\n".encode("utf-16"))
    for f, why in [(big, "larger than 2 MB"), (utf16, "binary, or a text encoding other than UTF-8")]:
        for cmd in ("scan", "fix"):
            r = cli("code", cmd, str(f))
            assert r.exit_code == 2, (cmd, r.output)
            assert f"skipped, not scanned: {why}" in r.stderr and "no insecure code found" not in r.stdout
        with pytest.raises(SkippedFile):
            scan_path(f)
    # a directory walk keeps skipping them (documented), and still scans the rest
    (tmp_path / "ok.py").write_text("import pickle\nobj = pickle.loads(b)\n")
    r = cli("code", "scan", str(tmp_path))
    assert r.exit_code == 1 and "PY-DESER-001" in r.stdout


# ---- finding 10: the password-hash patch keeps the salt with the hash -------------------------------------
def _verify(stored, password: bytes) -> bool:
    """The verification documented in docs/CODESHIELD.md."""
    if isinstance(stored, str):
        salt_hex, _, h = stored.partition("$")
        return hmac.compare_digest(hashlib.pbkdf2_hmac("sha256", password, bytes.fromhex(salt_hex), 600_000).hex(), h)
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha256", password, stored[:16], 600_000), stored[16:])


@pytest.mark.parametrize("method", ["hexdigest", "digest"])
def test_password_hash_patch_can_be_verified(method) -> None:
    code = f"import hashlib\n\ndef store(password):\n    return hashlib.md5(password).{method}()\n"
    r = fix_code(code, "python")
    assert [f.rule_id for f in r.applied] == ["PY-CRYPTO-002"] and "os.urandom(16)" in r.fixed
    ns: dict = {}
    exec(compile(r.fixed, "<fixed>", "exec"), ns)  # the patched code is ours, built from a fixed snippet
    stored = ns["store"](b"placeholder-password")
    assert stored != ns["store"](b"placeholder-password")  # salted
    assert _verify(stored, b"placeholder-password") and not _verify(stored, b"other-password")


def test_no_password_patch_where_the_hash_is_compared_or_a_salt_exists() -> None:
    for code in [
        "import hashlib\ndef check(password, stored):\n    return hashlib.md5(password).hexdigest() == stored\n",
        "import hashlib\ndef short(password):\n    return hashlib.md5(password).hexdigest()[:8]\n",
        "import hashlib\nSALT = b'x'\ndef store(password, salt):\n    return hashlib.sha1(password).hexdigest()\n",
    ]:
        r = fix_code(code, "python")
        assert not r.changed, r.fixed
        assert "PY-CRYPTO-002" in [f.rule_id for f in r.remaining]


# ---- finding 11: short snippets without a language tag -------------------------------------------------
SHORT = [
    ("python", 'import os\nos.system("rm " + name)\n', "PY-CMDI-002"),
    ("python", "import subprocess\nsubprocess.call('ls ' + d, shell=True)\n", "PY-CMDI-001"),
    ("python", "import pickle\nobj = pickle.loads(data)\n", "PY-DESER-001"),
]


@pytest.mark.parametrize(("lang", "code", "rule_id"), SHORT)
def test_short_untagged_snippets_are_scanned(cli, lang, code, rule_id) -> None:
    assert languages.detect(code) == lang
    assert rule_id in [f.rule_id for f in scan_text(code)]
    assert rule_id in [f.rule_id for f in scan_text(f"Try this:\n\n```\n{code}```\n")]
    r = cli("code", "scan", "-", input=code)
    assert r.exit_code == 1 and rule_id in r.stdout


@pytest.mark.parametrize(("code", "lang"), [
    ('package main\nimport "os"\nfunc main() { os.Exit(1) }\n', "go"),
    ("const os = require('os');\nconsole.log(os.platform());\n", "javascript"),
    ("public String ping(String host) throws IOException {\n    return host;\n}\n", "java"),
    ("function id() {\n  return Date.now().toString(36);\n}\n", "javascript"),
])
def test_detection_does_not_take_other_languages_for_python(code, lang) -> None:
    assert languages.detect(code) == lang


def test_prose_is_still_not_scanned() -> None:
    for text in ["To move, import your settings (File > Import) and restart; that is all = done.",
                 "Never pass user input to os.system() or eval(); use an argument list instead.",
                 "We import os images weekly; the system (os) reboots after that."]:
        assert scan_text(text) == [] and not scan_response(text).insecure
    assert languages.detect("We import os images weekly.") is None
    assert scan_code("import this\n", None) == []

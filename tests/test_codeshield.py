"""Code shield: fences and language detection, responses, verified fixes, robustness, seeds, CLI."""

from __future__ import annotations

import ast
import json
import random

import pytest
from typer.testing import CliRunner

from bastion.codeshield import (
    detect_language,
    extract_blocks,
    fix_code,
    fix_text,
    insecure_code_rate,
    load_seeds,
    scan_code,
    scan_path,
    scan_response,
    scan_text,
    verify,
)
from bastion.codeshield.rules import all_rules

FENCED = """Here is a helper.

```python
import subprocess

def ping(host):
    return subprocess.run(f"ping -c 1 {host}", shell=True).returncode == 0
```

And the browser side:

~~~js
document.getElementById("t").innerHTML = location.hash.slice(1);
~~~
"""


# ---- fences and language detection -----------------------------------------------------------
def test_extract_blocks_reads_fence_tags_and_positions() -> None:
    blocks = extract_blocks(FENCED)
    assert [b.language for b in blocks] == ["python", "javascript"]
    assert blocks[0].code.startswith("import subprocess")
    assert FENCED[blocks[1].start:blocks[1].end] == blocks[1].code
    assert blocks[0].line_offset == 3


def test_unclosed_fence_runs_to_end() -> None:
    blocks = extract_blocks("Answer:\n```c\nchar b[8];\ngets(b);\n")
    assert len(blocks) == 1 and blocks[0].language == "c"
    assert "gets(b);" in blocks[0].code


@pytest.mark.parametrize(("code", "lang"), [
    ("<?php\necho $x;\n", "php"),
    ("package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hi\")\n}\n", "go"),
    ("import java.util.List;\npublic class A {\n  public static void main(String[] args) {}\n}\n", "java"),
    ("#include <stdio.h>\nint main(void) {\n  printf(\"hi\");\n  return 0;\n}\n", "c"),
    ("#include <iostream>\nint main() { std::cout << 1; }\n", "cpp"),
    ("const fs = require('fs');\nconsole.log(fs.readdirSync('.'));\n", "javascript"),
    ("interface P { name: string }\nconst f = (p: P): string => p.name;\n", "typescript"),
    ("import os\n\ndef main():\n    for f in os.listdir('.'):\n        print(f)\n", "python"),
])
def test_detect_language(code: str, lang: str) -> None:
    assert detect_language(code) == lang


def test_untagged_fence_is_detected_and_prose_is_not_code() -> None:
    blocks = extract_blocks("```\n#include <stdio.h>\nint main(void) { char b[4]; gets(b); }\n```\n")
    assert blocks[0].language == "c"
    assert detect_language("The weather is nice today. Let's go for a walk and buy bread.") is None
    assert scan_text("Plain prose about eval and exec and shell=True in general.") == []


def test_findings_carry_response_line_numbers() -> None:
    fs = scan_text(FENCED)
    by_rule = {f.rule_id: f for f in fs}
    assert set(by_rule) == {"PY-CMDI-001", "JS-XSS-001"}
    assert by_rule["PY-CMDI-001"].line == 7 and by_rule["PY-CMDI-001"].column == 12
    assert by_rule["JS-XSS-001"].line == 13 and by_rule["JS-XSS-001"].block == 1
    d = by_rule["PY-CMDI-001"].to_dict()
    assert d["cwe"] == "CWE-78" and d["hazard"] == "S14" and d["fix_hint"] and d["message"]


# ---- guard integration -----------------------------------------------------------------------
def test_scan_response_flags_and_fixes() -> None:
    r = scan_response(FENCED)
    assert r.insecure and r.categories == ("S14", "S2")
    assert r.fixed_text is not None and "['ping', '-c', '1', host]" in r.fixed_text
    assert "textContent" in r.fixed_text
    assert r.diff.startswith("--- a/response")
    again = scan_response(r.fixed_text)
    assert not again.insecure


def test_scan_response_clean_and_threshold() -> None:
    clean = scan_response("```python\ndef add(a, b):\n    return a + b\n```")
    assert not clean.insecure and clean.categories == () and clean.fixed_text is None
    low_only = "```python\nimport tempfile\np = tempfile.mktemp()\n```"
    assert scan_response(low_only, min_severity="high").insecure is False
    assert scan_response(low_only, min_severity="medium").insecure is True
    with pytest.raises(ValueError):
        scan_response("x", min_severity="severe")
    with pytest.raises(TypeError):
        scan_response(b"bytes")  # type: ignore[arg-type]


# ---- verified fixes --------------------------------------------------------------------------
FIXABLE = [
    ("python", "import yaml\ncfg = yaml.load(open('c.yml'), Loader=yaml.Loader)\n", "PY-DESER-002", "yaml.safe_load(open('c.yml'))"),
    ("python", "import subprocess\nsubprocess.run(f'tar czf {out} {src}', shell=True)\n", "PY-CMDI-001", "['tar', 'czf', out, src]"),
    ("python", "import subprocess\nsubprocess.call('ls ' + d, shell=True)\n", "PY-CMDI-001", "subprocess.call(['ls', d])"),
    ("python", "import os\nrc = os.system('rm ' + f)\n", "PY-CMDI-002", "subprocess.run(['rm', f]).returncode"),
    ("python", "import hashlib\ndef store(password):\n    return hashlib.md5(password.encode()).hexdigest()\n",
     "PY-CRYPTO-002", 'hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 600_000).hex()'),
    ("python", "import hashlib\nd = hashlib.sha1(data).hexdigest()\n", "PY-CRYPTO-001", "hashlib.sha256(data)"),
    ("python", "import sqlite3\ncur.execute(\"SELECT * FROM users WHERE name = '\" + name + \"'\")\n", "PY-SQLI-001",
     "cur.execute('SELECT * FROM users WHERE name = ?', (name,))"),
    ("python", "import sqlite3\ncur.execute(f\"SELECT * FROM t WHERE a = {a} AND b = '{b}'\")\n", "PY-SQLI-001",
     "'SELECT * FROM t WHERE a = ? AND b = ?', (a, b)"),
    ("python", "import psycopg2\ncur.execute(\"SELECT * FROM t WHERE a = '%s'\" % a)\n", "PY-SQLI-001",
     "'SELECT * FROM t WHERE a = %s', (a,)"),
    ("python", "import requests\nr = requests.get(url, verify=False, timeout=5)\n", "PY-TLS-001", "requests.get(url, timeout=5)"),
    ("python", "import ssl\nctx = ssl._create_unverified_context()\n", "PY-TLS-002", "ssl.create_default_context()"),
    ("python", "app.run(debug=True)\n", "PY-DEBUG-001", "app.run(debug=False)"),
    ("python", "import random\ndef token():\n    return random.getrandbits(128)\n", "PY-RAND-001", "secrets.randbits(128)"),
    ("python", "x = eval(s)\n", "PY-CODE-001", "ast.literal_eval(s)"),
    ("c", "void f(char *s) {\n  char b[16];\n  strcpy(b, s);\n}\n", "C-MEM-002", 'snprintf(b, sizeof(b), "%s", s)'),
    ("c", "void f(void) {\n  char b[16];\n  gets(b);\n}\n", "C-MEM-001", "fgets(b, sizeof(b), stdin)"),
    ("c", "void f(char *s) {\n  char b[16] = \"x\";\n  strcat(b, s);\n}\n", "C-MEM-003", "strncat(b, s, sizeof(b) - strlen(b) - 1)"),
    ("c", "void f(char *s) {\n  char b[16];\n  sprintf(b, \"%s\", s);\n}\n", "C-MEM-004", 'snprintf(b, sizeof(b), "%s", s)'),
    ("c", "void f(char *s) { printf(s); }\n", "C-FMT-001", 'printf("%s", s)'),
    ("javascript", "const h = crypto.createHash('md5').update(x).digest('hex');\n", "JS-CRYPTO-001", "createHash('sha256')"),
    ("javascript", "el.innerHTML = location.hash;\n", "JS-XSS-001", "el.textContent = location.hash"),
    ("javascript", "const a = new https.Agent({ rejectUnauthorized: false });\n", "JS-TLS-001", "rejectUnauthorized: true"),
    ("java", "class A { void f() throws Exception { MessageDigest.getInstance(\"MD5\"); } }\n", "JAVA-CRYPTO-001", '"SHA-256"'),
    ("java", "class A { String token() { Random r = new Random(); return \"\" + r.nextLong(); } }\n", "JAVA-RAND-001",
     "new java.security.SecureRandom()"),
    ("go", "package main\nvar c = &tls.Config{InsecureSkipVerify: true}\n", "GO-TLS-001", "InsecureSkipVerify: false"),
    ("php", "<?php\n$h = md5($password);\n", "PHP-CRYPTO-001", "password_hash($password, PASSWORD_DEFAULT)"),
    ("php", "<?php\necho \"Hi \" . $_GET['n'];\n", "PHP-XSS-001", "htmlspecialchars($_GET['n'], ENT_QUOTES, 'UTF-8')"),
]


@pytest.mark.parametrize(("lang", "code", "rule_id", "expect"), FIXABLE, ids=[f"{c[2]}-{i}" for i, c in enumerate(FIXABLE)])
def test_fix_is_verified(lang: str, code: str, rule_id: str, expect: str) -> None:
    before = [f.rule_id for f in scan_code(code, lang)]
    assert rule_id in before
    r = fix_code(code, lang, path="snippet")
    assert rule_id in [f.rule_id for f in r.applied]
    assert expect in r.fixed, r.fixed
    after = [f.rule_id for f in scan_code(r.fixed, lang)]
    assert after.count(rule_id) < before.count(rule_id)
    assert all(after.count(x) <= before.count(x) for x in set(after))  # no new finding
    if lang == "python":
        ast.parse(r.fixed)
    assert r.diff.startswith("--- a/snippet\n+++ b/snippet\n")


def test_every_fix_named_in_yaml_exists() -> None:
    from bastion.codeshield.fixes import FIXERS

    assert {r.fix for r in all_rules() if r.fix} <= set(FIXERS)
    assert len({r.fix for r in all_rules() if r.fix}) >= 20


def test_no_patch_when_no_safe_rewrite_exists() -> None:
    # A table name cannot be a placeholder; shell syntax cannot become an argument list; a pointer has no sizeof.
    for lang, code in [
        ("python", "cur.execute(f'SELECT * FROM {table} WHERE a = 1' )\n"),
        ("python", "import subprocess\nsubprocess.run(f'cat {f} | grep x', shell=True)\n"),
        ("c", "void f(char *d, char *s) { strcpy(d, s); }\n"),
    ]:
        r = fix_code(code, lang)
        assert not r.changed and r.diff == ""


def test_verify_rejects_broken_or_worse_patches() -> None:
    code = "import yaml\ncfg = yaml.load(s)\n"
    f = next(x for x in scan_code(code, "python") if x.rule_id == "PY-DESER-002")
    ok, _ = verify("python", code, "import yaml\ncfg = yaml.safe_load(s\n", f)  # does not parse
    assert not ok
    ok, _ = verify("python", code, "import yaml, pickle\ncfg = pickle.loads(s)\n", f)  # a new finding appears
    assert not ok
    ok, _ = verify("python", code, "import yaml\ncfg = yaml.load(s)  # still here\n", f)  # finding not gone
    assert not ok
    ok, after = verify("python", code, "import yaml\ncfg = yaml.safe_load(s)\n", f)
    assert ok and after == []


def test_fix_text_patches_only_code_blocks() -> None:
    tf = fix_text(FENCED)
    assert tf.changed
    assert tf.fixed.startswith("Here is a helper.\n\n```python\n")
    assert "And the browser side:" in tf.fixed
    assert {f.rule_id for f in tf.applied} == {"PY-CMDI-001", "JS-XSS-001"}


# ---- robustness ------------------------------------------------------------------------------
def test_garbage_and_binary_input_do_not_crash(tmp_path) -> None:
    rng = random.Random(7)
    for lang in ("python", "javascript", "c", "cpp", "java", "go", "php", "typescript"):
        for _ in range(20):
            junk = "".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(0, 400)))
            scan_code(junk + " eval( system( strcpy( execute( ", lang)
            fix_code(junk + " yaml.load(x) gets(b) ", lang)
    scan_response("```python\n\x00\x01\ud800 eval(x)\n```")
    scan_response("```\n" + "(" * 5000 + "\n```")
    (tmp_path / "blob.py").write_bytes(b"\x00\xff\xfe" * 100)
    (tmp_path / "bad.py").write_bytes(b"import yaml\ncfg = yaml.load(\xff\xfe open('x'))\n")
    fs = scan_path(tmp_path)
    assert [f.rule_id for f in fs] == ["PY-DESER-002"]
    with pytest.raises(ValueError):
        scan_code("x", "cobol")


def test_scan_directory_skips_vendor_folders(tmp_path) -> None:
    (tmp_path / "app.py").write_text("import pickle\nobj = pickle.loads(b)\n")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "x.js").write_text("eval(req.body.x)\n")
    (tmp_path / "notes.md").write_text("```go\nc := &tls.Config{InsecureSkipVerify: true}\n```\n")
    got = sorted((f.rule_id, f.path.rsplit("/", 1)[-1]) for f in scan_path(tmp_path))
    assert got == [("GO-TLS-001", "notes.md"), ("PY-DESER-001", "app.py")]


# ---- red-team seeds and the insecure-code rate -----------------------------------------------
def test_seeds_are_ordinary_tasks() -> None:
    seeds = load_seeds()
    assert len(seeds) >= 40
    assert {s.language for s in seeds} >= {"python", "javascript", "c", "java", "go", "php"}
    assert len({s.id for s in seeds}) == len(seeds)
    assert all(s.prompt.startswith("Write") and s.cwe.startswith("CWE-") for s in seeds)
    assert load_seeds("go") and all(s.language == "go" for s in load_seeds("go"))


def test_insecure_code_rate() -> None:
    answers = [
        ("a", "```python\nimport yaml\ncfg = yaml.load(open('c'))\n```"),
        ("b", "```python\nimport yaml\ncfg = yaml.safe_load(open('c'))\n```"),
        ("c", "I can't help with that."),
        ("d", "```c\nchar b[8];\ngets(b);\n```"),
    ]
    r = insecure_code_rate(answers)
    assert (r.n, r.with_code, r.insecure) == (4, 3, 2)
    assert r.rate == pytest.approx(2 / 3, abs=1e-3)
    assert 0 < r.ci95[0] < r.rate < r.ci95[1] <= 1
    assert r.by_cwe == {"CWE-502": 1, "CWE-242": 1}
    assert [i["insecure"] for i in r.items] == [True, False, False, True]
    json.dumps(r.to_dict())


# ---- CLI -------------------------------------------------------------------------------------
@pytest.fixture
def cli():
    from bastion.cli.main import app

    runner = CliRunner()
    return lambda *args, input=None: runner.invoke(app, list(args), input=input)


def test_cli_scan_file_json_and_exit_codes(cli, tmp_path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import yaml\ncfg = yaml.load(open('c.yml'))\n")
    good = tmp_path / "good.py"
    good.write_text("def f():\n    return 1\n")
    r = cli("code", "scan", str(bad), "--json")
    assert r.exit_code == 1, r.output
    data = json.loads(r.stdout)
    assert data["count"] == 1 and data["findings"][0]["rule_id"] == "PY-DESER-002"
    assert data["findings"][0]["line"] == 2 and data["findings"][0]["path"] == str(bad)
    r = cli("code", "scan", str(good))
    assert r.exit_code == 0 and "no insecure code found" in r.stdout
    r = cli("code", "scan", str(tmp_path))
    assert r.exit_code == 1 and "PY-DESER-002" in r.stdout


def test_cli_scan_stdin_response(cli) -> None:
    r = cli("code", "scan", "-", input=FENCED)
    assert r.exit_code == 1
    assert "PY-CMDI-001" in r.stdout and "JS-XSS-001" in r.stdout and "<stdin>:7:12" in r.stdout


def test_cli_usage_errors(cli, tmp_path) -> None:
    assert cli("code", "scan", str(tmp_path / "missing.py")).exit_code == 2
    assert cli("code", "scan", "-", "--lang", "cobol", input="x").exit_code == 2
    assert cli("code", "scan", "-", "--min-severity", "huge", input="x").exit_code == 2
    assert cli("code", "fix", "-", "--write", input="x").exit_code == 2


def test_cli_fix_diff_and_write(cli, tmp_path) -> None:
    r = cli("code", "fix", "-", input=FENCED)
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("--- a/<stdin>\n+++ b/<stdin>\n")
    assert "+    return subprocess.run(['ping', '-c', '1', host]).returncode == 0" in r.stdout
    src = tmp_path / "a.c"
    src.write_text("void f(char *s) {\n  char b[16];\n  strcpy(b, s);\n  system(s);\n}\n")
    r = cli("code", "fix", str(src), "--write")
    assert r.exit_code == 1  # system(s) has no safe automatic rewrite and remains
    assert 'snprintf(b, sizeof(b), "%s", s);' in src.read_text()
    assert "system(s);" in src.read_text()

"""`classify --out` through symlinks and FIFOs, ids copied through exactly, `eval` on a pipe, undefined precision."""

from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.guard.evaluate import metrics

runner = CliRunner()
LINES = '{"id": "a", "prompt": "How do I bake bread?"}\n{"id": "b", "prompt": "What is the capital of France?"}\n'


def test_classify_out_writes_through_a_symlink(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(LINES)
    (tmp_path / "res").mkdir()
    real = tmp_path / "res" / "real.jsonl"
    real.write_text("old\n")
    link = tmp_path / "outlink"
    link.symlink_to(real)
    r = runner.invoke(app, ["classify", str(src), "--out", str(link)])
    assert r.exit_code == 0, r.output
    assert link.is_symlink() and link.resolve() == real.resolve()
    assert [json.loads(x)["id"] for x in real.read_text().splitlines()] == ["a", "b"]
    assert not list(tmp_path.glob(".*.partial")) and not list((tmp_path / "res").glob(".*.partial"))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_classify_out_writes_into_a_fifo(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(LINES)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got: list[str] = []

    def read() -> None:
        with open(fifo, encoding="utf-8") as f:  # blocks until classify opens it for writing
            got.append(f.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    r = runner.invoke(app, ["classify", str(src), "--out", str(fifo)])
    assert r.exit_code == 0, r.output
    reader.join(60)
    assert fifo.is_fifo()
    assert got and [json.loads(x)["id"] for x in got[0].splitlines()] == ["a", "b"]


def test_classify_copies_numeric_ids_exactly(tmp_path):
    src = tmp_path / "in.jsonl"
    # (an id past float range, 1e400, stays an error record: tests/test_cli_guard.py holds that contract)
    ids = ["0.1000000000000000055511151231257827", "1E5", "7", "-0", '[1, {"k": 2.50}]', "1.0",
           "123456789012345678901234567890"]
    src.write_text("".join(f'{{"id": {i}, "prompt": "hello"}}\n' for i in ids) + '{"id": 2.50, "prompt": 5}\n')
    r = runner.invoke(app, ["classify", str(src)])
    assert r.exit_code == 0, r.output
    out = r.stdout.splitlines()
    assert len(out) == len(ids) + 1
    for i, line in zip(ids, out, strict=False):
        assert line.startswith(f'{{"id": {i}, "unsafe": '), line
    assert out[-1] == '{"id": 2.50, "error": "missing or non-string \'prompt\'"}'
    assert json.loads(out[3])["unsafe"] is False  # the rest of the line is the usual record


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_eval_reads_a_pipe(tmp_path):
    fifo = tmp_path / "ev.fifo"
    os.mkfifo(fifo)
    data = '{"prompt": "How do I bake bread?", "label": 0}\n{"prompt": "Capital of France?", "label": 0}\n'

    def write() -> None:
        with open(fifo, "w", encoding="utf-8") as f:  # blocks until eval opens it, as `<(cat file)` would
            f.write(data)

    threading.Thread(target=write, daemon=True).start()
    r = runner.invoke(app, ["eval", str(fifo), "--json"])
    if r.exit_code != 0:  # let the writer go before failing
        with open(fifo, encoding="utf-8") as f:
            f.read()
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n"] == 2


def test_precision_and_f1_are_undefined_where_nothing_is_flagged():
    # nothing scores >= 0.5: precision is 0/0, and so is F1
    res = metrics("prompt", np.array([0, 0, 1]), np.array([0.1, 0.2, 0.3]), 0.5)
    assert res["precision"] is None and res["f1"] is None and res["recall"] == 0.0 and res["fpr"] == 0.0
    row = next(x for x in res["table"] if x["threshold"] == 0.9)
    assert row["precision"] is None and row["f1"] is None
    row = next(x for x in res["table"] if x["threshold"] == 0.2)  # 0.2 and 0.3 flagged: both defined
    assert row["precision"] == 0.5 and row["recall"] == 1.0 and row["f1"] == pytest.approx(2 / 3)
    # no positives: recall undefined, so F1 is too; one false positive makes precision a real 0
    res = metrics("prompt", np.array([0, 0]), np.array([0.9, 0.1]), 0.5)
    assert res["precision"] == 0.0 and res["recall"] is None and res["f1"] is None
    assert res["undefined"] == ["recall", "auprc"]
    # both defined and 0: F1 stays 0
    res = metrics("prompt", np.array([1, 0]), np.array([0.1, 0.9]), 0.5)
    assert res["precision"] == 0.0 and res["recall"] == 0.0 and res["f1"] == 0.0


def test_eval_cli_prints_undefined_precision_as_null_and_dash(tmp_path):
    neg = tmp_path / "neg.jsonl"
    neg.write_text('{"prompt": "How do I bake bread?", "label": 0}\n{"prompt": "Capital of France?", "label": 0}\n')
    r = runner.invoke(app, ["eval", str(neg), "--json", "--threshold", "prompt_harm=1.0"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["precision"] is None and d["f1"] is None and d["recall"] is None
    r = runner.invoke(app, ["eval", str(neg), "--threshold", "prompt_harm=1.0"])
    assert "precision - recall - F1 -" in r.stdout

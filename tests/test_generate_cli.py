"""`python -m derive generate` and `flow` on bad arguments: one clear line, a non-zero status, no
traceback, nothing written; and `generate` writes only what changes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from derive.tools import cli
from derive.write import generate as gen

ROOT = Path(__file__).resolve().parent.parent


def run(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "derive", *args],
        cwd=cwd,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )


def one_line_error(result, code: int, *fragments: str) -> str:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    return result.stderr


def test_a_spec_file_without_out_is_refused(tmp_path, capsys):
    spec = tmp_path / "leaky_rnn.py"
    spec.write_text("from derive.spec import Cell\n")
    assert cli.main(["generate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"generate: {spec} is a spec file: give --out DIR, the package folder for its cells "
        "(without --out, generate writes the built-in cells into generated/)\n"
    )


def test_a_missing_spec_file_is_one_line(tmp_path, capsys):
    assert cli.main(["generate", str(tmp_path / "missing.py"), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"generate: spec file {tmp_path / 'missing.py'} does not exist\n"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "exit_call, reported",
    [("sys.exit(3)", "SystemExit(3)"), ("os._exit(0)", "os._exit(0)"), ("raise SystemExit", "SystemExit(None)")],
)
def test_a_spec_that_exits_while_loading_fails_clearly(tmp_path, exit_call, reported):
    spec = tmp_path / "quits.py"
    spec.write_text(f"import os, sys\n{exit_call}\n")
    result = run("generate", str(spec), "--out", str(tmp_path / "out"))
    one_line_error(result, 1, f"generate: spec file {spec} exits while loading ({reported})")
    assert not (tmp_path / "out").exists()


def test_flow_with_an_output_below_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert cli.main(["flow", "rnn", "--steps", "2", "--out", str(tmp_path / "file" / "flow")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"flow: cannot write into {tmp_path / 'file' / 'flow'}: ") and err.count("\n") == 1


@pytest.mark.parametrize("option", ["--input-scale", "--gate-bias", "--weight-scale"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_flow_rejects_non_finite_numbers(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as exited:
        cli.main(["flow", "rnn", "--out", str(tmp_path), f"{option}={value}"])
    assert exited.value.code == 2
    assert f"argument {option}: expected a finite number, got {value!r}" in capsys.readouterr().err


def test_docs_pages_are_written_only_when_they_change(tmp_path):
    pages = gen.render_docs([c for c in gen.builtin_cells() if c.name in ("rnn", "gru")])
    written = []
    gen.write_docs(pages, tmp_path, log=written.append)
    assert written == [f"wrote {tmp_path / name}" for name in pages]
    stamps = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    written.clear()
    gen.write_docs(pages, tmp_path, log=written.append)
    assert written == [] and {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps


def test_build_refuses_a_folder_name_that_cannot_be_imported_before_writing(tmp_path):
    from derive.build import build
    from derive.cells import builtin_cells

    rnn = next(c for c in builtin_cells() if c.name == "rnn")
    with pytest.raises(ValueError, match=r"out must be a folder whose name is a Python package name, got 'my-cells'"):
        build(rnn, tmp_path / "my-cells")
    assert not (tmp_path / "my-cells").exists()

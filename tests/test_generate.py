"""generated/ is current, regeneration is byte-stable, and a failed generation changes nothing."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from derive.write import generate as gen

ROOT = Path(__file__).resolve().parent.parent


def run(*args, **env):
    return subprocess.run(
        [sys.executable, "-m", "derive", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env},
    )


def test_check_is_clean_on_the_committed_tree():
    result = run("check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_generation_is_byte_identical_across_processes(tmp_path):
    """Two generations in fresh interpreters with different hash seeds give the same bytes."""
    script = "import sys; from derive.write import generate as g; g.write_package(g.render_all(g.builtin_cells()), sys.argv[1], log=lambda m: None)"
    for k, seed in enumerate(["1", "2"]):
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / f"gen{k}")],
            cwd=ROOT,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
    first = {p.name: p.read_bytes() for p in (tmp_path / "gen0").glob("*.py")}
    second = {p.name: p.read_bytes() for p in (tmp_path / "gen1").glob("*.py")}
    committed = {p.name: p.read_bytes() for p in (ROOT / "generated").glob("*.py")}
    assert first == second
    assert first == committed


def test_check_names_a_stale_file(tmp_path):
    files = gen.render_all(gen.builtin_cells())
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert gen.stale_files(files, tmp_path) == []
    (tmp_path / "lstm.py").write_text(files["lstm.py"].replace("c_new = ", "c_new = 0.5 * ", 1))
    (tmp_path / "gru.py").unlink()
    assert gen.stale_files(files, tmp_path) == ["lstm.py", "gru.py"]


def test_header_has_hashes_and_no_timestamp():
    text = (ROOT / "generated" / "lstm.py").read_text()
    header = text.splitlines()[:4]
    assert "template cell.py.jinja" in header[0] and "derive/cells/lstm.py" in header[0]
    assert header[2].startswith("# spec+templates+kernel support sha256: ")
    assert header[3].startswith("# content sha256: ")
    import hashlib

    body = "\n".join(text.splitlines(keepends=False)[4:]) + "\n"
    assert header[3].split()[-1] == hashlib.sha256(body.encode()).hexdigest()


def test_a_change_to_the_kernel_support_code_makes_the_cells_stale(tmp_path, monkeypatch):
    """Kernels compile derive/runtime/matrix.py in, and Numba's cache only watches the kernel's own file:
    a change there must change the generated text, so that `check` fails and regeneration
    refreshes the caches."""
    cell = next(c for c in gen.builtin_cells() if c.name == "rnn")
    before = gen.render_cell(cell)
    changed = tmp_path / "matrix.py"
    changed.write_bytes(gen.KERNEL_SUPPORT[0].read_bytes() + b"\n# tuned\n")
    monkeypatch.setattr(gen, "KERNEL_SUPPORT", [changed, *gen.KERNEL_SUPPORT[1:]])
    after = gen.render_cell(cell)
    assert before != after and before.splitlines()[3:] == after.splitlines()[3:]  # only the inputs hash


def test_failed_generation_leaves_output_untouched(tmp_path):
    out = tmp_path / "cells"
    files = gen.render_all(gen.builtin_cells()[:1])
    gen.write_package(files, out, log=lambda m: None)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    broken = dict(files, **{"rnn.py": files["rnn.py"] + "\nthis is not python\n"})
    with pytest.raises(RuntimeError, match="fail to import"):
        gen.write_package(broken, out, log=lambda m: None)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not list(tmp_path.glob(".cells-staging-*")), "staging directory left behind"


def test_ci_runs_the_readme_commands_in_a_new_environment():
    """.ci/run reads the main job and the test command from README.md and runs them, in that order,
    in a virtual environment it makes, the bounds-checked pass beside the tests, then `check`."""
    readme = (ROOT / "README.md").read_text()
    main_job = "pip install -e . && python -m derive generate && python -m derive gradcheck"
    tests = "pip install -e '.[test,torch]' && python -m pytest -n auto --dist loadfile"
    assert main_job in readme and tests in readme
    ci = (ROOT / ".ci" / "run").read_text()
    reader = re.search(r"^readme_command\(\) \{.*?^\}", ci, flags=re.DOTALL | re.MULTILINE).group(0)
    read = subprocess.run(
        ["bash", "-c", reader + '\nreadme_command "Main job"; readme_command "Tests"'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert read.stdout.splitlines() == [main_job, tests]
    steps = [
        'python3 -m venv "$scratch/venv"',
        'source "$scratch/venv/bin/activate"',
        'eval "$main_job"',
        'eval "$install_tests"',  # the test command's own install, so that the bounds-checked pass can start
        'NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR="$scratch/boundscheck-cache" python -m pytest',
        'eval "$test_command"',
        'wait "$boundscheck"',
        "python -m derive check",
    ]
    assert all(step in ci for step in steps)
    assert [ci.index(step) for step in steps] == sorted(ci.index(step) for step in steps)


def test_check_validates_and_derives_each_cell_once(monkeypatch):
    """One derivation per cell feeds both its module and its docs page."""
    import derive.derivation as derivation

    calls = {"derive": [], "validate": []}
    real_derive, real_validate = gen.derive, derivation.validate
    monkeypatch.setattr(gen, "derive", lambda cell: calls["derive"].append(cell.name) or real_derive(cell))
    monkeypatch.setattr(derivation, "validate", lambda cell: calls["validate"].append(cell.name) or real_validate(cell))
    report = gen.check()
    names = sorted(c.name for c in gen.builtin_cells())
    assert report.current and report.cells == len(names)
    assert sorted(calls["derive"]) == names
    assert sorted(calls["validate"]) == names

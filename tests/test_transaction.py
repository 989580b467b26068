"""Regeneration is all or nothing: failures, Ctrl-C, kills and concurrent runs never break the
package, and no hand edit is overwritten silently."""

import copy
import errno
import json
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from derive.write import generate as gen
from derive.write import transaction

ROOT = Path(__file__).resolve().parent.parent
QUIET = dict(log=lambda message: None)


def variant(k: int) -> dict[str, str]:
    """A package of the rnn and gru cells whose texts differ from variant to variant."""
    cells = [copy.copy(c) for c in gen.builtin_cells() if c.name in ("rnn", "gru")]  # the built-ins stay as they are
    for cell in cells:
        cell.doc = f"{cell.name}, variant {k}."
    return gen.render_all(cells)


@pytest.fixture(scope="module")
def variants():
    return variant(1), variant(2)


def snapshot(out: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(out.glob("*.py"))}


def with_a_name_error(files: dict[str, str]) -> dict[str, str]:
    """The package with rnn.py broken at run time (NameError: undefined_name), still importable."""
    rnn = files["rnn.py"].replace("h_new = tanh(W_hh_h[row", "h_new = undefined_name + tanh(W_hh_h[row", 1)
    assert rnn != files["rnn.py"]
    return dict(files, **{"rnn.py": rnn})


def importable(parent: Path, package: str) -> subprocess.CompletedProcess:
    """Import the package and run each cell once, in a fresh interpreter."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(parent), str(ROOT)]), NUMBA_DISABLE_JIT="1")
    return subprocess.run(
        [sys.executable, "-c", transaction.SMOKE_TEST, package], env=env, capture_output=True, text=True
    )


def writer(files: dict[str, str], out: Path, tmp_path: Path, name: str) -> subprocess.Popen:
    """A separate process that writes `files` into `out` with write_package."""
    spec = tmp_path / f"{name}.json"
    spec.write_text(json.dumps(files))
    script = (
        "import json, sys; from derive.write import generate as g; "
        "g.write_package(json.load(open(sys.argv[1])), sys.argv[2])"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-c", script, str(spec), str(out)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# -- exceptions and Ctrl-C at each step -----------------------------------------------------
@pytest.mark.parametrize(
    "step, error",
    [
        ("_stage", OSError("disk full")),
        ("_smoke_test", RuntimeError("a kernel does not run")),
        ("_exchange", OSError("rename refused")),
        ("_stage", KeyboardInterrupt()),
        ("_smoke_test", KeyboardInterrupt()),
    ],
)
def test_a_failure_or_ctrl_c_at_any_step_leaves_the_old_package(tmp_path, variants, monkeypatch, step, error):
    old, new = variants
    out = tmp_path / "cells"
    gen.write_package(old, out, **QUIET)
    before = snapshot(out)

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(transaction, step, fail)
    expected = KeyboardInterrupt if isinstance(error, KeyboardInterrupt) else gen.GenerateError
    with pytest.raises(expected) as raised:
        gen.write_package(new, out, **QUIET)
    if expected is gen.GenerateError:
        what = {
            "_stage": "staging the new files",
            "_smoke_test": "testing the new package",
            "_exchange": "swapping it in",
        }[step]
        assert str(raised.value).startswith(f"{what} failed, {out} was not changed: ")
    assert snapshot(out) == before
    assert not list(tmp_path.glob(".cells-staging-*")), "staging directory left behind"
    assert importable(tmp_path, "cells").returncode == 0


def test_modules_that_fail_to_run_are_not_swapped_in(tmp_path, variants):
    old, _ = variants
    out = tmp_path / "cells"
    gen.write_package(old, out, **QUIET)
    broken = with_a_name_error(old)
    with pytest.raises(
        gen.GenerateError,
        match=r"(?s)testing the new package failed.*fail to import or to run.*NameError: name 'undefined_name'",
    ):
        gen.write_package(broken, out, **QUIET)
    assert snapshot(out) == {k: old[k] for k in sorted(old)}


def test_the_new_modules_are_tested_even_from_the_directory_of_the_old(tmp_path, variants, monkeypatch):
    """`python -c` puts the working directory first on sys.path: run from the package's parent
    (as `python -m derive generate` from the repository root), the smoke test must still import
    the staged modules, not the old ones beside it."""
    old, _ = variants
    out = tmp_path / "cells"
    gen.write_package(old, out, **QUIET)
    monkeypatch.chdir(tmp_path)
    broken = with_a_name_error(old)
    with pytest.raises(gen.GenerateError, match="NameError: name 'undefined_name'"):
        gen.write_package(broken, out, **QUIET)
    assert snapshot(out) == {k: old[k] for k in sorted(old)}


def test_nothing_to_do_when_the_package_is_current(tmp_path, variants):
    old, _ = variants
    out = tmp_path / "cells"
    assert gen.write_package(old, out, **QUIET) == list(old)
    assert gen.write_package(old, out, **QUIET) == []


def test_files_not_regenerated_and_their_caches_stay(tmp_path, variants):
    old, new = variants
    out = tmp_path / "cells"
    gen.write_package(old, out, **QUIET)
    cache = out / "__pycache__"
    cache.mkdir()
    for name in (
        "gru.forward-40.py311.nbi",
        "rnn.forward-40.py311.nbi",
        "rnn.cpython-311.pyc",
        "__init__.cpython-311.pyc",
    ):
        (cache / name).write_text("cached")
    changed = gen.write_package({"__init__.py": old["__init__.py"], "rnn.py": new["rnn.py"]}, out, **QUIET)
    assert changed == ["rnn.py"]
    assert (out / "gru.py").read_text() == old["gru.py"]
    assert sorted(p.name for p in cache.iterdir()) == ["__init__.cpython-311.pyc", "gru.forward-40.py311.nbi"]


# -- hand edits -----------------------------------------------------------------------------
def test_a_hand_edit_is_detected_and_never_overwritten_without_force(tmp_path, variants):
    old, new = variants
    out = tmp_path / "cells"
    gen.write_package(old, out, **QUIET)
    assert gen.edited_by_hand(old["rnn.py"]) is None
    edited = old["rnn.py"].replace("h_new = tanh(", "h_new = 0.5 * tanh(", 1)
    (out / "rnn.py").write_text(edited)
    assert "edited by hand" in gen.edited_by_hand(edited)
    with pytest.raises(gen.HandEditedError) as error:
        gen.write_package(new, out, **QUIET)
    message = str(error.value)
    assert (
        f"{out / 'rnn.py'}: edited by hand (its content no longer matches the content sha256 in its header)" in message
    )
    assert "--force" in message
    assert (out / "rnn.py").read_text() == edited
    gen.write_package(new, out, force=True, **QUIET)
    assert snapshot(out) == {k: new[k] for k in sorted(new)}


def test_check_and_generate_on_a_copy_of_the_repository(tmp_path):
    """`check` names a hand-edited module and a hand-edited docs page, with one piece of advice;
    `generate` refuses to overwrite either, `generate --force` restores both."""
    for part in ("derive", "templates", "generated", "docs/cells"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)  # with templates/ and generated/, what makes it a checkout
    env = dict(os.environ, PYTHONPATH=str(tmp_path))

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "derive", *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )

    lstm, page = tmp_path / "generated" / "lstm.py", tmp_path / "docs" / "cells" / "gru.md"
    original, original_page = lstm.read_text(), page.read_text()
    lstm.write_text(original.replace("c_new = c*f", "c_new = 2*c*f", 1))
    page.write_text(original_page + "MY IMPORTANT NOTE\n")
    result = run("check")
    assert result.returncode == 1
    assert f"{lstm}: edited by hand (its content no longer matches the content sha256 in its header)" in result.stdout
    assert f"{page}: edited by hand (its content no longer matches the content sha256 in its header)" in result.stdout
    assert "stale" not in result.stdout and "run `python -m derive generate` and" not in result.stdout
    assert "`python -m derive generate --force`" in result.stdout
    result = run("generate")
    assert result.returncode == 1 and "generate: " in result.stderr and "--force" in result.stderr
    assert str(lstm) in result.stderr and str(page) in result.stderr
    assert lstm.read_text() != original and page.read_text().endswith("MY IMPORTANT NOTE\n")
    assert run("generate", "--force").returncode == 0
    assert lstm.read_text() == original and page.read_text() == original_page
    assert run("check").returncode == 0
    result = run("generate")  # nothing changed: nothing is written, not even the docs pages
    assert result.returncode == 0 and "wrote" not in result.stdout, result.stdout


# -- what may be replaced -------------------------------------------------------------------
def test_an_existing_file_is_never_replaced(tmp_path, variants):
    """--out LICENSE (a file named like a package) or a symlink to a file: refused, file kept."""
    license_ = tmp_path / "LICENSE"
    license_.write_text("MIT License\n")
    (tmp_path / "link").symlink_to(license_)
    for out in (license_, tmp_path / "link"):
        with pytest.raises(gen.NotAPackageError, match=f"{license_} was not changed: it is a file, not a folder"):
            gen.write_package(variants[0], out, force=True, **QUIET)
    assert license_.read_text() == "MIT License\n" and (tmp_path / "link").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LICENSE", "link"]


@pytest.mark.parametrize("foreign", ["train.log", "__init__.py", "notes/"])
def test_a_folder_with_files_generate_did_not_write_is_never_replaced(tmp_path, variants, foreign):
    """Not even with force: the folder keeps its inode (no copy swapped in) and every file."""
    out = tmp_path / "work"
    gen.write_package(variants[0], out, **QUIET)
    mine = out / foreign.rstrip("/")
    mine.mkdir() if foreign.endswith("/") else mine.write_text("# mine\n")
    before, inode = {p.name: p.stat().st_ino for p in out.iterdir()}, out.stat().st_ino
    with pytest.raises(gen.NotAPackageError) as error:
        gen.write_package(variants[1], out, force=True, **QUIET)
    message = str(error.value)
    assert message.startswith(f"{out} was not changed: it holds files that `generate` did not write:\n  {mine}\n")
    assert "--force does not change that" in message and "rerun with --force" not in message
    assert out.stat().st_ino == inode and {p.name: p.stat().st_ino for p in out.iterdir()} == before


def test_an_empty_folder_or_one_with_caches_only_is_replaced(tmp_path, variants):
    for out in (tmp_path / "empty", tmp_path / "caches"):
        out.mkdir()
    (tmp_path / "caches" / "__pycache__").mkdir()
    for out in (tmp_path / "empty", tmp_path / "caches"):
        assert gen.write_package(variants[0], out, **QUIET) == list(variants[0])


def test_no_lock_file_is_left_beside_the_package(tmp_path, variants):
    gen.write_package(variants[0], tmp_path / "cells", **QUIET)
    gen.write_package(variants[1], tmp_path / "cells", **QUIET)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells"]


def test_a_read_only_parent_gives_a_clear_message(tmp_path, variants, monkeypatch):
    """Simulated: the tests run as root, for whom permission bits do not stop writes."""
    out = tmp_path / "cells"
    gen.write_package(variants[0], out, **QUIET)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".cells-staging-x"))

    monkeypatch.setattr(transaction.tempfile, "mkdtemp", refuse)
    with pytest.raises(
        gen.GenerateError,
        match=f"{out} was not changed: cannot write into its folder {tmp_path} "
        r"\(Permission denied\), where `generate` stages the new package",
    ):
        gen.write_package(variants[1], out, **QUIET)
    assert snapshot(out) == {k: variants[0][k] for k in sorted(variants[0])}


def test_an_output_folder_below_a_file_gives_a_clear_message(tmp_path, variants):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "sub" / "cells"
    with pytest.raises(gen.GenerateError, match=f"{out} was not changed: cannot create its folder {out.parent} "):
        gen.write_package(variants[0], out, **QUIET)


# -- where the folder cannot be swapped (overlayfs lower layer, mount point) ----------------
@pytest.mark.parametrize("code", [errno.EXDEV, errno.EBUSY])
@pytest.mark.parametrize("exchange", ["fails", "unsupported"])
def test_an_unswappable_folder_is_replaced_file_by_file(tmp_path, variants, monkeypatch, code, exchange):
    """renameat2 fails with EXDEV or EBUSY, or is missing and the two renames fail so."""
    old, new = variants
    out = tmp_path / "cells"
    gen.write_package(old, out, **QUIET)
    cache = out / "__pycache__"
    cache.mkdir()
    for name in ("gru.forward-40.py311.nbi", "rnn.forward-40.py311.nbi"):
        (cache / name).write_text("cached")
    inode = out.stat().st_ino

    def unswappable(a, b):
        raise OSError(code, os.strerror(code))

    if exchange == "fails":
        monkeypatch.setattr(transaction, "_exchange", unswappable)
    else:
        monkeypatch.setattr(transaction, "_exchange", lambda a, b: False)
        monkeypatch.setattr(transaction.os, "rename", unswappable)
    files = {"__init__.py": old["__init__.py"], "rnn.py": new["rnn.py"], "gru.py": old["gru.py"]}
    assert gen.write_package(files, out, **QUIET) == ["rnn.py"]
    assert out.stat().st_ino == inode
    assert snapshot(out) == {k: files[k] for k in sorted(files)}
    assert sorted(p.name for p in cache.iterdir()) == ["gru.forward-40.py311.nbi"]
    assert sorted(p.name for p in out.iterdir()) == ["__init__.py", "__pycache__", "gru.py", "rnn.py"]


def test_a_failure_while_replacing_file_by_file_leaves_the_old_package(tmp_path, variants, monkeypatch):
    """The new files are all written beside the old ones first; a failure there changes nothing."""
    old, new = variants
    out = tmp_path / "cells"
    gen.write_package(old, out, **QUIET)
    monkeypatch.setattr(
        transaction, "_exchange", lambda a, b: (_ for _ in ()).throw(OSError(errno.EXDEV, "cross-device"))
    )
    copies, copyfile, smoke_test = [], shutil.copyfile, transaction._smoke_test

    def copy_then_fail(source, target, **kwargs):
        copies.append(target)
        if len(copies) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return copyfile(source, target, **kwargs)

    def the_disk_fills_after_the_test(*args):
        smoke_test(*args)
        monkeypatch.setattr(transaction.shutil, "copyfile", copy_then_fail)

    monkeypatch.setattr(transaction, "_smoke_test", the_disk_fills_after_the_test)
    with pytest.raises(gen.GenerateError, match=f"swapping it in failed, {out} was not changed: .*No space left"):
        gen.write_package(new, out, **QUIET)
    assert len(copies) == 2
    assert snapshot(out) == {k: old[k] for k in sorted(old)}
    assert sorted(p.name for p in out.iterdir()) == sorted(old)


def test_a_failure_after_some_files_were_replaced_says_so(tmp_path, variants, monkeypatch):
    old, new = variants
    out = tmp_path / "cells"
    gen.write_package(old, out, **QUIET)
    monkeypatch.setattr(transaction, "_exchange", lambda a, b: (_ for _ in ()).throw(OSError(errno.EBUSY, "busy")))
    renames, replace = [], os.replace

    def replace_then_fail(source, target):
        renames.append(target)
        if len(renames) == 2:
            raise OSError(errno.EIO, "Input/output error")
        replace(source, target)

    monkeypatch.setattr(transaction.os, "replace", replace_then_fail)
    with pytest.raises(
        transaction.PartlyReplacedError,
        match=f"^replacing the files of {out} one by one failed after 1 of 2: OSError: .*run `generate` again$",
    ):
        gen.write_package(new, out, **QUIET)
    first, second = [name for name in new if new[name] != old[name]]
    assert (out / first).read_text() == new[first] and (out / second).read_text() == old[second]
    assert sorted(p.name for p in out.iterdir()) == sorted(old)  # no partial file left
    monkeypatch.undo()
    gen.write_package(new, out, **QUIET)
    assert snapshot(out) == {k: new[k] for k in sorted(new)}


def test_files_left_by_a_killed_file_by_file_replacement_are_removed(tmp_path, variants):
    old, new = variants
    out = tmp_path / "cells"
    gen.write_package(old, out, **QUIET)
    (out / f".rnn.py.killed{transaction.PARTIAL}").write_text(new["rnn.py"])
    gen.write_package(new, out, **QUIET)
    assert sorted(p.name for p in out.iterdir()) == sorted(new)


# -- concurrent runs ------------------------------------------------------------------------
def test_a_second_run_waits_for_the_lock(tmp_path, variants):
    old, new = variants
    out = tmp_path / "cells"
    gen.write_package(old, out, **QUIET)
    with transaction.locked(out, **QUIET):
        process = writer(new, out, tmp_path, "new")
        # its first line, however long its start takes on a loaded machine
        assert select.select([process.stdout], [], [], 120)[0], "the second run neither waits nor ends"
        assert process.stdout.readline() == f"waiting for another `generate` to finish writing into {tmp_path}\n"
        time.sleep(1)
        assert process.poll() is None, process.communicate()
        assert snapshot(out) == {k: old[k] for k in sorted(old)}
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert snapshot(out) == {k: new[k] for k in sorted(new)}


def test_two_runs_at_once_leave_one_complete_package(tmp_path, variants):
    out = tmp_path / "cells"
    processes = [writer(files, out, tmp_path, f"v{k}") for k, files in enumerate(variants)]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    assert snapshot(out) in [{k: v[k] for k in sorted(v)} for v in variants]
    assert importable(tmp_path, "cells").returncode == 0
    assert not list(tmp_path.glob(".cells-staging-*"))


# -- kills ----------------------------------------------------------------------------------
def test_killing_generate_at_random_points_never_breaks_the_package(tmp_path, variants):
    """SIGKILL after random delays, several times, each run writing the variant the package does
    not hold: the package is always one complete variant, importable, with untouched headers.
    Half the delays are spread over a whole run, half fall close to the moment of the swap."""
    out = tmp_path / "cells"
    gen.write_package(variants[0], out, **QUIET)
    complete = [{k: v[k] for k in sorted(v)} for v in variants]
    start, inode = time.perf_counter(), out.stat().st_ino
    process = writer(variants[1], out, tmp_path, "timing")
    swap = None
    while process.poll() is None:
        if swap is None and out.stat().st_ino != inode:
            swap = time.perf_counter() - start
        time.sleep(0.002)
    assert process.returncode == 0 and swap is not None
    duration = time.perf_counter() - start
    rng = random.Random(7)
    delays = [rng.uniform(0, 1.1 * duration) for _ in range(4)] + [
        rng.uniform(swap - 0.05, swap + 0.02) for _ in range(4)
    ]
    current, outcomes = 1, []
    for attempt, delay in enumerate(delays):
        process = writer(variants[1 - current], out, tmp_path, f"kill{attempt}")
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        state = snapshot(out)
        assert state in complete, f"attempt {attempt}: a mix of variants: {sorted(state)}"
        outcomes.append(f"{delay:.2f}s: " + ("new" if complete.index(state) != current else "old"))
        current = complete.index(state)
        assert gen.hand_edits(variants[0], out) == []
        result = importable(tmp_path, "cells")
        assert result.returncode == 0, result.stderr
    print(f"a run takes {duration:.2f} s and swaps at {swap:.2f} s; killed at {outcomes}")
    gen.write_package(variants[0], out, **QUIET)  # the next run cleans what killed runs left
    assert not list(tmp_path.glob(".cells-staging-*"))
    assert snapshot(out) == complete[0]


def test_a_cut_fallback_swap_is_restored_by_the_next_run(tmp_path, variants, monkeypatch):
    """Without RENAME_EXCHANGE the swap is two renames; a kill between them leaves the old
    package in the staging directory, and the next run puts it back."""
    old, new = variants
    out = tmp_path / "cells"
    gen.write_package(old, out, **QUIET)
    leftover = tmp_path / ".cells-staging-killed"
    leftover.mkdir()
    os.rename(out, leftover / "previous")  # the first rename of the fallback, then the kill
    monkeypatch.setattr(transaction, "_exchange", lambda a, b: False)
    gen.write_package(new, out, **QUIET)
    assert snapshot(out) == {k: new[k] for k in sorted(new)}
    assert not leftover.exists()

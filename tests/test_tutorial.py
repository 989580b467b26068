"""The "Add your own cell" tutorial in docs/variants.md runs as written, in a fresh directory."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "variants.md"


def code_blocks(text: str) -> list[tuple[str, str]]:
    return re.findall(r"```(\w+)\n(.*?)```", text, flags=re.S)


def test_tutorial_runs_as_written(tmp_path):
    tutorial = DOC.read_text().split("## Add your own cell", 1)[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    blocks = code_blocks(tutorial)
    assert [lang for lang, _ in blocks] == ["python", "bash", "python", "bash", "text"]
    last_output = None
    for lang, code in blocks:
        first = code.splitlines()[0]
        if lang == "python" and re.fullmatch(r"# \w+\.py", first):
            (tmp_path / first[2:]).write_text(code)
        elif lang == "python":
            (tmp_path / "step.py").write_text(code)
            result = subprocess.run([sys.executable, "step.py"], cwd=tmp_path, env=env, capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
        elif lang == "bash":
            command = code.strip().replace("python ", f"{sys.executable} ", 1)
            result = subprocess.run(["bash", "-ec", command], cwd=tmp_path, env=env, capture_output=True, text=True)
            assert result.returncode == 0, result.stderr
            last_output = result.stdout
        else:  # the output the tutorial shows must be what the command printed
            for line in code.strip().splitlines():
                assert line in last_output, f"tutorial shows {line!r}; the command printed:\n{last_output}"
    assert (tmp_path / "mycells" / "leaky_rnn.py").is_file()


def test_variants_table_matches_the_generated_cells():
    """Each row names the cell's states and its parameters with their shapes."""
    from generated import CELLS

    table = DOC.read_text().split("## Functions", 1)[0]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `(\w+)` \|.*$", table, flags=re.M)}
    assert set(rows) == set(CELLS)
    for name, cls in CELLS.items():
        cells = [c.strip() for c in rows[name].split("|")[1:-1]]
        sizes = [f" ({size})" for size in cls.state_sizes] if cls.sizes else [""] * len(cls.state_names)
        assert cells[2] == ", ".join(n + size for n, size in zip(cls.state_names, sizes)), name
        if cells[3].startswith("as `"):
            continue
        for p in cls.parameters:
            rows_text = p.size if p.blocks == 1 else f"{p.blocks}{p.size}"
            shape = f"({rows_text}, {p.columns})" if p.columns else f"({rows_text})"
            assert f"{p.name} {shape}" in cells[3], f"{name}: {p.name} {shape} not in {cells[3]!r}"

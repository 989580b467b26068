"""`show` and the formulas API: every cell, every part, every format; the Jacobian as written
must equal the derived one."""

import contextlib
import io
import re
from collections import defaultdict
from pathlib import Path

import pytest
import sympy as sp

from derive.analysis import notation
from derive.analysis.formulas import PARTS, formulas, jacobian_blocks
from derive.derivation import derive
from derive.tools import cli
from derive.write.generate import builtin_cells
from tests import extra_cells

BUILTIN = [c.name for c in builtin_cells()]
ALL_CELLS = builtin_cells() + list(extra_cells.CELLS + extra_cells.FORMULA_ONLY)
KERNEL_NAMES = re.compile(r"\b\w+_new\b|\bd_\w+|_acc\b|_pre\b|\bW_\w+_[xh]_\w\b|\bcse\d")


def show(*args) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["show", *args]) == 0
    return out.getvalue()


def balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            return False
    return depth == 0 and text.count("\\left") == text.count("\\right")


@pytest.mark.parametrize("part", [*PARTS, "all"])
@pytest.mark.parametrize("name", BUILTIN)
def test_show_prints_every_part_in_every_format(name, part):
    text, latex, markdown = (
        show(name, "--part", part),
        show(name, "--part", part, "--latex"),
        show(name, "--part", part, "--markdown"),
    )
    assert text == show(name, "--part", part, "--text")
    titles = {"forward": "Forward", "backward": "Backward (BPTT)", "jacobian": "Jacobian ∂s_t/∂s_{t-1}"}
    for p in PARTS:
        shown = part in (p, "all")
        assert (f"\n{titles[p]} — " in text) == shown
        assert (f"\n## {titles[p]}\n" in markdown) == shown
        assert (f", {titles[p]}: " in latex) == shown
    assert not KERNEL_NAMES.search(text), KERNEL_NAMES.search(text)
    assert balanced(latex) and "\\begin{aligned}" in latex
    assert markdown.count("```math") == markdown.count("```") // 2


def test_rnn_and_lstm_read_as_written_by_hand():
    rnn = show("rnn")
    assert "  h_t = tanh(W_ih x_t + W_hh h_{t-1} + b_ih + b_hh)\n" in rnn
    assert "  ∂h_t/∂h_{t-1} = diag(1 − h_t²)·W_hh\n" in rnn
    assert "  δh_{t-1} = W_hhᵀ·δ(W_hh h_{t-1})\n" in rnn
    lstm = show("lstm", "--part", "jacobian")
    assert (
        "  ∂(h_t, c_t)/∂(h_{t-1}, c_{t-1}) = ⎡ ∂h_t/∂h_{t-1}  ∂h_t/∂c_{t-1} ⎤\n"
        "                                    ⎣ ∂c_t/∂h_{t-1}  ∂c_t/∂c_{t-1} ⎦\n"
    ) in lstm
    assert "  ∂c_t/∂c_{t-1} = diag(f_t)\n" in lstm
    assert "  ∂h_t/∂c_{t-1} = diag(f_t ⊙ o_t ⊙ (1 − tanh(c_t)²))\n" in lstm
    assert (
        "  ∂h_t/∂h_{t-1} = diag(o_t ⊙ (1 − tanh(c_t)²))·∂c_t/∂h_{t-1} + diag(o_t ⊙ (1 − o_t) ⊙ tanh(c_t))·W_hh[o]\n"
        in lstm
    )
    assert "∂c_t/∂h_{t-1} = diag(i_t ⊙ (1 − i_t) ⊙ g_t)·W_hh[i] + diag(f_t ⊙ (1 − f_t) ⊙ c_{t-1})·W_hh[f]" in lstm
    assert "  c_t = i_t ⊙ g_t + f_t ⊙ c_{t-1}\n" in show("lstm", "--part", "forward")


def test_multilevel_cell_shows_the_inner_jacobian():
    text = formulas(extra_cells.gru_reset_before).text()
    assert "  rh_t = r_t ⊙ h_{t-1}\n" in text
    assert "  n_t = tanh(W_ih[n] x_t + b_ih[n] + b_hh[n] + W_hn rh_t)\n" in text
    assert "diag((1 − z_t) ⊙ (1 − n_t²))·W_hn·∂rh_t/∂h_{t-1}" in text
    assert "  where ∂rh_t/∂h_{t-1} = diag(r_t) + diag(r_t ⊙ (1 − r_t) ⊙ h_{t-1})·W_hh[r]\n" in text
    assert "  δrh_t = W_hnᵀ·δ(W_hn rh_t)\n" in text  # the product's gradient reaches the in-step value
    assert "  δW_hn += δ(W_hn rh_t)·rh_tᵀ\n" in text


@pytest.mark.parametrize("cell", extra_cells.CELLS + extra_cells.FORMULA_ONLY, ids=lambda c: c.name)
def test_other_cells_render_in_every_format(cell):
    f = formulas(cell)
    assert not KERNEL_NAMES.search(f.text())
    assert balanced(f.latex()) and balanced(f.markdown())


def test_peephole_blocks_keep_their_gate_paths():
    text = formulas(extra_cells.lstm_peephole).text("jacobian")
    assert "  ∂c_t/∂c_{t-1} = diag(f_t + i_t ⊙ (1 − i_t) ⊙ g_t ⊙ w_c[i] + f_t ⊙ (1 − f_t) ⊙ c_{t-1} ⊙ w_c[f])\n" in text
    assert "·∂c_t/∂c_{t-1}\n" in text  # a diagonal block that is a sum is referred to, not multiplied out
    assert "  ∂h_t/∂h_{t-1} = diag([h_t > 0] ⊙ u)\n" in formulas(extra_cells.indrnn).text("jacobian")


def test_show_accepts_a_spec_file():
    text = show(extra_cells.__file__, "--part", "jacobian")
    assert "RNNIdentity (rnn_identity)" in text and "  ∂h_t/∂h_{t-1} = W_hh\n" in text
    assert "GRUResetBefore (gru_reset_before)" in text


def _expanded(blocks, key) -> dict:
    """A block as {(): direct coefficient, (W, gate, inner node or None): coefficient}, with the
    references to other new states' blocks multiplied out."""
    block = blocks[key]
    out = defaultdict(lambda: sp.S.Zero)
    out[()] += block.direct
    for path in block.paths:
        if path.reduction is not None:
            out[("reduction", path.reduction.symbol.name)] += path.coefficient
        elif path.matrix is None:
            for k, v in _expanded(blocks, path.block).items():
                out[k] += path.coefficient * v
        else:
            out[(path.matrix[0].name, path.matrix[1], path.block[0].name if path.block else None)] += path.coefficient
    return out


def _as_derived(d, target, k, blocks) -> dict:
    """The derivation's Jacobian row of `target`, restricted to state k, in the same form."""
    out = defaultdict(lambda: sp.S.Zero)
    names = [s.name for s in d.cell.states]
    for term in d.jacobian[target]:
        if term.kind == "direct" and term.state == k:
            out[()] += term.coefficient
        elif term.kind == "projection":
            gate = term.param.gates[term.gate] if term.param.gates else None
            operand = term.param.operand
            if operand == names[k]:
                out[(term.param.name, gate, None)] += term.coefficient
            elif operand not in names:
                inner = next(n.symbol for n in d.nodes if n.symbol.name == operand)
                if not blocks[(inner, k)].is_zero:
                    out[(term.param.name, gate, operand)] += term.coefficient
        elif term.kind == "reduction" and not blocks[(term.reduction.operand, k)].is_zero:
            out[("reduction", term.reduction.symbol.name)] += term.coefficient
    return out


@pytest.mark.parametrize("cell", ALL_CELLS, ids=lambda c: c.name)
def test_written_jacobian_equals_the_derived_one(cell):
    """Chaining through other states' blocks and merging diagonals must not change a block."""
    d = derive(cell)
    blocks = jacobian_blocks(d)
    for target in d.jacobian:
        for k in range(len(cell.states)):
            ours, derived = _expanded(blocks, (target, k)), _as_derived(d, target, k, blocks)
            for key in set(ours) | set(derived):
                assert sp.expand(ours[key] - derived[key]) == 0, (cell.name, target, k, key)


def test_lstm_written_with_a_chain_through_c():
    d = derive(builtin_cells()[1])
    blocks = jacobian_blocks(d)
    h_new, c_new = (n.symbol for n in d.new_state_nodes())
    assert [p.block for p in blocks[(h_new, 0)].paths if p.block] == [(c_new, 0)]
    assert blocks[(c_new, 1)].is_diagonal and blocks[(c_new, 1)].direct == sp.Symbol("f", real=True)


def test_sympy_api():
    f = formulas("lstm")
    assert f.jacobian.shape == (2, 2)
    f_t = next(s for s, text in f.notation.text.items() if text == "f_t")
    assert f.jacobian[1, 1] == notation.diag(f_t)
    assert f.blocks[3].text() == "∂c_t/∂c_{t-1} = diag(f_t)"
    assert (
        f.blocks[3].latex() == "\\frac{\\partial c_{t}}{\\partial c_{t-1}} = \\operatorname{diag}\\left(f_{t}\\right)"
    )
    assert f._repr_latex_().startswith("$$") and balanced(f._repr_latex_())
    assert f.forward[-1]._repr_latex_() == "$\\displaystyle h_{t} = o_{t} \\odot \\tanh\\left(c_{t}\\right)$"
    assert sp.latex(f.forward[-1].lhs) == "h_{t}"  # display symbols are named by their LaTeX
    rnn = formulas("rnn")
    assert isinstance(rnn.jacobian[0, 0], sp.Mul) and rnn.jacobian[0, 0].args_cnc()[1][1].name == "W_{hh}"


def test_errors_are_clear():
    with pytest.raises(ValueError, match="unknown cell 'nope'"):
        formulas("nope")
    with pytest.raises(ValueError, match="part must be one of"):
        formulas("rnn").text("sideways")
    with pytest.raises(ValueError, match="no display name for"):
        formulas("rnn").notation.to_text(sp.Symbol("mystery"))


def test_readme_shows_what_show_prints():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    shown = (
        readme.split("python -m derive show lstm --part jacobian", 1)[1].split("```\n\n```\n", 1)[1].split("```", 1)[0]
    )
    assert shown and shown in show("lstm", "--part", "jacobian")

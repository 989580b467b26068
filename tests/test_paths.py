"""Outside a source checkout, commands that rebuild or compare the checkout's own files refuse in
one line and write nothing (tests/test_wheel.py runs them from a real install)."""

import pytest

from derive.tools import cli
from derive.write import paths


@pytest.mark.parametrize("command", [["generate"], ["generate", "lstm"], ["check"], ["bench", "--cells", "rnn"]])
def test_checkout_commands_refuse_outside_a_checkout(command, monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "CHECKOUT", tmp_path)  # as in site-packages: no pyproject.toml, no templates/
    assert not paths.in_checkout()
    with pytest.raises(SystemExit) as refused:
        cli.main(command)
    message = str(refused.value.code)
    assert "works in a source checkout of rnn-derive only" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_this_tree_is_a_checkout_with_the_top_level_templates():
    assert paths.in_checkout()
    assert paths.TEMPLATES == paths.CHECKOUT / "templates"
    assert (paths.TEMPLATES / "cell.py.jinja").is_file()

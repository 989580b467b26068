"""Public path of `derive.analysis.formulas` (`derive.formulas.formulas("lstm")`)."""

from derive.analysis.formulas import CellFormulas, Formula, formulas  # noqa: F401

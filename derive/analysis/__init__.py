"""Reading cells for people: formulas, and how gradients flow. Writes nothing into `generated/`.

notation.py     display symbols and printers (text, LaTeX)
formulas.py     a cell's equations for people (public as `derive.formulas`)
flow.py         gradient-flow measurement over a trajectory (public as `derive.flow`)
lyapunov.py     Lyapunov exponents of the Jacobian product (QR method)
flow_report.py  the analyzer's CSV, table and plots
"""

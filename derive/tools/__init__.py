"""The top layer: commands and checks built on everything below. Nothing imports it.

cli.py              `python -m derive ...`: argument parsing and printing only
gradcheck.py        finite-difference proof of backward and Jacobian
accuracy.py         kernel_math's error in ulps
torch_reference.py  an eager PyTorch oracle of any cell
bench/              `python -m derive bench`: timings against other frameworks
"""

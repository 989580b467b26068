"""Module text → files: `generate` and `check`, written atomically.

paths.py        where every file is, in a checkout and in an installed wheel
generate.py     generate() and check() for `generated/` and `docs/cells/` (headers, hashes, hand edits)
transaction.py  the atomic swap of a generated folder, locked, recoverable after a crash
build.py        build() for scripts and notebooks (public as `derive.build`)
"""

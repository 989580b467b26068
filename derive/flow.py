"""Public path of `derive.analysis.flow` (`derive.flow.analyze`, `derive.flow.lyapunov`)."""

from derive.analysis.flow import Flow, Settings, analyze, lyapunov, measure, spectrum  # noqa: F401

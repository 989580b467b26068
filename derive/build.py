"""Public path of `derive.write.build.build` (`from derive.build import build`)."""

from derive.write.build import build, import_package  # noqa: F401

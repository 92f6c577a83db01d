from __future__ import annotations

import os

from hypothesis import settings

# CI runs are reproducible: the same examples every time, no example database on disk.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

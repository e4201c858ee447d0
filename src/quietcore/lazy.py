"""Objects named as ``"module:attribute"``, imported when first used.

The command line names its commands and the report formats their renderers this way so that a
run imports only what it uses: start-up is a large part of a small fleet's audit.
"""

from __future__ import annotations

import importlib
from typing import Any


def load(reference: str) -> Any:
    module_name, attribute = reference.split(":")
    return getattr(importlib.import_module(module_name), attribute)

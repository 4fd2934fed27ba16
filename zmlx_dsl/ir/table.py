"""The op table: every registry entry by op name and by Python spelling (ir/registry.py fills it at import)."""
from __future__ import annotations

from typing import Any

OPS: dict[str, Any] = {}          # op name -> its registry.Op (registry imports this module, never the reverse)
BY_PY_NAME: dict[str, str] = {}   # a Python spelling ("mx.add", "operator.add") -> op name

"""The IR: nodes, dtypes, the op registry, construction, passes, autodiff, the NumPy interpreter."""
from . import registry  # noqa: F401  (fills the op table, ir/table.py, that construction and passes read)

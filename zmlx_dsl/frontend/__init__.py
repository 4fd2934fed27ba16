"""Frontends: Python functions and ZMLX C-like expression strings -> IR."""

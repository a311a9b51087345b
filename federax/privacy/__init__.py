"""`fx.privacy`: differential privacy accounting on `dp-accounting` (the `privacy` extra)."""

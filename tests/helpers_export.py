"""Moved to hypoderm_testkit.export. Kept only for tests/test_preprocess_parity_e2e.py until its imports point
there; then delete this file."""

from hypoderm_testkit.export import skin_image

__all__ = ["skin_image"]

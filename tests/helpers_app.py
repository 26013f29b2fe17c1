"""Moved to hypoderm_testkit.app. Kept only for tests/test_preprocess_parity_e2e.py until its imports point there;
then delete this file."""

from hypoderm_testkit.app import skin_photo

__all__ = ["skin_photo"]

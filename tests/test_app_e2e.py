"""Split by page state into tests/app/e2e/ (issue 30); its helpers are in hypoderm_testkit.browser. This module is
kept only because tests/test_preprocess_parity_e2e.py imports them from here: point that file's import at
hypoderm_testkit.browser, then delete this one (it holds no test)."""

from hypoderm_testkit.browser import CHROMIUM, CHROMIUM_ARGS, LiveServer, analyse, open_page

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "LiveServer", "analyse", "open_page"]

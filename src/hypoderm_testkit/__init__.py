"""What the tests (tests/) and the benchmark scripts (benchmarks/) build their inputs with, in one importable place
(no sys.path edits): small exported models and checkpoints (`app`, `export`), synthetic photos, hostile inputs
(`fuzz`, `fuzz_cli`), raw-socket uploads (`uploads`) and the live server + headless Chromium of the browser tests
(`browser`).

Lives beside the package in src/ so that the editable install imports it, but is not part of the wheel
(pyproject.toml's package list names `hypoderm` only); nothing in `hypoderm` imports it (tests/test_import_rules.py).
"""

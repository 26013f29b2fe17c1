"""The web app in a real headless Chromium (a package, so that its conftest.py does not take the name `conftest`
that tests/conftest.py's helpers are imported by)."""

"""Project-wide pytest configuration: load Flocker's fixtures for real parts."""

pytest_plugins = ["flocker.testtools.pytest_plugin"]

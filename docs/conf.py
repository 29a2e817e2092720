"""Sphinx configuration for the Flocker documentation (``docs/``).

Build with ``python -m sphinx -W -b html docs docs/_build/html``.  The REST
API and command-line references are generated at build time from the code
(``_ext/flockerdocs.py``), so Flocker must be importable (it is, in the
project's ``.venv``).  Nothing is fetched from the network.
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))

from flocker import __version__  # noqa: E402

project = "Flocker"
author = "the Flocker developers"
copyright = "the Flocker developers"
version = release = __version__

extensions = ["flockerdocs"]

exclude_patterns = ["_build", "_ext", ".gitignore"]
root_doc = "index"
html_theme = "alabaster"
html_theme_options = {"description": "Docker containers together with their data"}
html_static_path: list[str] = []
html_show_sourcelink = False
nitpicky = True

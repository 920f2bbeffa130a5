"""Sphinx configuration of taskkit's documentation."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# autodoc imports taskkit, which needs a configured Django: use the test settings.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

import taskkit  # noqa: E402

project = "taskkit"
author = "The taskkit developers"
copyright = "the taskkit developers"
release = taskkit.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]

exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

html_theme = "furo"
html_title = f"taskkit {release}"

autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_class_signature = "mixed"

napoleon_google_docstring = True
napoleon_numpy_docstring = False

nitpicky = False

"""Where the files that ship beside the package live: the dashboard app and the presets.

``app/`` (the Streamlit dashboard) and ``configs/`` (the presets) sit next to ``ael/`` in a
source checkout, which is where an editable install (the README's) finds them. A wheel installs
copies under ``<prefix>/share/ael/`` (``pyproject.toml``: ``[tool.setuptools.data-files]``), so a
plain ``pip install`` has them too. The checkout wins when both exist.
"""

from __future__ import annotations

import site
import sys
from pathlib import Path

__all__ = ["CHECKOUT_ROOT", "app_entry", "presets_dir", "shared_roots"]

#: The folder holding ``ael/`` (a source checkout when ``app/`` and ``configs/`` are beside it).
CHECKOUT_ROOT = Path(__file__).resolve().parent.parent


def shared_roots() -> list[Path]:
    """Folders searched in order: the checkout, then ``share/ael`` under this and the user prefix."""
    roots = [CHECKOUT_ROOT, Path(sys.prefix) / "share" / "ael"]
    user_base = getattr(site, "USER_BASE", None)
    if user_base:
        roots.append(Path(user_base) / "share" / "ael")
    return roots


def _find(relative: str) -> Path | None:
    for root in shared_roots():
        candidate = root / relative
        if candidate.exists():
            return candidate
    return None


def app_entry() -> Path:
    """The dashboard's Streamlit entry point (``app/dashboard.py``).

    Raises:
        FileNotFoundError: naming every place searched, when no copy exists.
    """
    found = _find("app/dashboard.py")
    if found is None:
        searched = ", ".join(str(root / "app" / "dashboard.py") for root in shared_roots())
        raise FileNotFoundError(f"the dashboard app is not installed (searched {searched}); "
                                "reinstall ael, or run from a source checkout")
    return found


def presets_dir() -> Path:
    """The presets folder (``configs/``): the checkout's, else the installed copy.

    Returns the checkout path when nothing is found, so error messages name the expected place.
    """
    return _find("configs") or CHECKOUT_ROOT / "configs"

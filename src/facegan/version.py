"""facegan's version, in a core module of its own: lower layers read it without importing the root facade."""
from __future__ import annotations

__version__ = "0.1.0"

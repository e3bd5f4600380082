"""Paths the test modules need at import time (in ``parametrize`` and ``skipif``), where no fixture reaches.

Not a test module: nothing here is collected. Everything else test modules share is a fixture
in ``tests/conftest.py``.
"""

from pathlib import Path

#: The checkout.
ROOT = Path(__file__).resolve().parents[1]
#: Real scenes read in place beside the checkout (``../shared/data``); may be absent.
SHARED_DATA = ROOT.parent / "shared" / "data"

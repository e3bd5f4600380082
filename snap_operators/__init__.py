"""snap-progressive-classifier: SNAP operators for land-cover mapping, and an
engine that runs SNAP graph XML files on Dask without SNAP.

The import is light: no TensorFlow, no esa_snappy. Operators register
themselves when :func:`snap_operators.operator.operators` is first called.
"""

__version__ = "0.1.0"

from .errors import SnapPcError  # noqa: F401
from .product import Band, MetadataElement, Product  # noqa: F401

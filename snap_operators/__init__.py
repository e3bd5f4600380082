"""snap-progressive-classifier: SNAP operators for land-cover mapping, and an
engine that runs SNAP graph XML files on Dask without SNAP.

The import is light: no TensorFlow, no esa_snappy. Operators register
themselves when :func:`snap_operators.core.operator.operators` is first called.
The layers are subpackages (``core``, ``engine``, ``grid``, ``io``, ``science``,
``ops``, ``snap``, ``apps``); this module only holds the version.
"""

__version__ = "0.1.0"

import os as _os

# GDAL's block cache defaults to 5% of RAM and fills with dirty blocks of the
# files being written, so peak memory would grow with the scene up to that
# cap. A fixed cache keeps memory flat; users can still override it.
_os.environ.setdefault("GDAL_CACHEMAX", "128")

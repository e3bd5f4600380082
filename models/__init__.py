"""Attention U-Net training for snap-progressive-classifier (imported as ``snap_pc_models``).

Only this package needs TensorFlow (``pip install 'snap-progressive-classifier[train]'``);
its modules import it lazily, so ``snap-pc --help`` and the dataset builder work without it.

Modules
-------
attention_unet  the Keras 3 model and its named configurations
dataset         patches from a product and label masks, spatial-block splits, shards
train           training loop, metrics, plots and model card (``snap-pc train``)
export          ONNX export with the metadata contract of ``snap_operators.io.onnx_model``
cli             the ``snap-pc dataset`` and ``snap-pc train`` sub-commands
"""

# TensorFlow's wheel carries a SQLite built without the R*Tree module and makes its symbols the
# process's: a SQLite user loaded after it (Python's sqlite3, the GDAL under fiona and pyogrio) runs
# on it and can neither write nor read a GeoPackage's spatial index (fiona refuses to write one at
# all). Every TensorFlow import of the project is in this package, so loading them here, first,
# keeps them on their own SQLite: training and then exporting label masks in one process works.
import sqlite3  # noqa: E402, F401

import fiona  # noqa: E402, F401
import pyogrio  # noqa: E402, F401

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

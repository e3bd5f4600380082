"""ONNX export of a trained Attention U-Net, with its metadata, verified against TensorFlow.

The file follows the contract of :mod:`snap_operators.io.onnx_model`: input
``bands`` ``(batch, bands, height, width)`` float32, normalized; output
``probabilities`` ``(batch, classes, height, width)``; height and width
dynamic, multiples of ``2**depth``; ``metadata_props`` carry bands,
normalization, classes, size multiple, halo and opset.

Example
-------
>>> export_onnx(model, meta, "model.onnx", check_inputs=[patches])   # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from snap_operators.core.errors import SnapPcError
from snap_operators.core.staging import staged_path
from snap_operators.io.onnx_model import ModelMetadata, open_session

__all__ = ["ExportError", "DEFAULT_OPSET", "TOLERANCE", "export_onnx", "effective_halo"]

DEFAULT_OPSET = 17
#: Largest accepted difference between ONNX Runtime and TensorFlow probabilities.
TOLERANCE = 1e-4


class ExportError(SnapPcError):
    """The ONNX export failed or does not reproduce the TensorFlow model."""


def effective_halo(model, n_bands: int, size_multiple: int, theoretical: int, mass: float = 0.99,
                   seed: int = 0) -> int:
    """Recommended halo: the effective receptive field of the trained network, in pixels.

    The gradient of the centre pixel's output with respect to the input
    (Luo et al., 2016, "Understanding the effective receptive field") is
    measured on random normalized input; the halo is the smallest radius whose
    square window holds `mass` of its magnitude, rounded up to
    `size_multiple` and never above the `theoretical` radius (rounded up).
    """
    import tensorflow as tf

    size = 2 * theoretical + size_multiple
    size += (-size) % size_multiple
    x = tf.Variable(np.random.default_rng(seed).normal(size=(1, size, size, n_bands)).astype("float32"))
    c = size // 2
    with tf.GradientTape() as tape:
        y = model(x, training=False)
        # Sum of log-probabilities: every class's response counts, none saturates.
        target = tf.reduce_sum(tf.math.log(y[0, c, c, :] + 1e-7))
    g = np.abs(tape.gradient(target, x).numpy()[0]).sum(axis=-1)
    total = g.sum()
    radius = theoretical
    if total > 0:
        for r in range(theoretical + 1):
            if g[c - r:c + r + 1, c - r:c + r + 1].sum() >= mass * total:
                radius = r
                break
    cap = -(-theoretical // size_multiple) * size_multiple
    return int(min(cap, -(-max(radius, 1) // size_multiple) * size_multiple))


def _convert(model, n_bands: int, opset: int):
    import tensorflow as tf
    import tf2onnx

    spec = (tf.TensorSpec([None, None, None, n_bands], tf.float32, name="bands"),)
    fn = tf.function(lambda x: {"probabilities": model(x, training=False)})
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec, opset=opset,
                                             inputs_as_nchw=["bands"], outputs_as_nchw=["probabilities"])
    for value in (proto.graph.input[0], proto.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        for dim, name in zip((dims[0], dims[2], dims[3]), ("batch", "height", "width")):
            dim.dim_param = name
    return proto


def export_onnx(model, meta: ModelMetadata, path, *, check_inputs: Sequence[np.ndarray] = (),
                opset: int = DEFAULT_OPSET, tolerance: float = TOLERANCE, seed: int = 0) -> dict:
    """Write `model` as ONNX to `path`, verified against TensorFlow.

    Parameters
    ----------
    model : keras.Model
        Input ``(None, None, None, bands)`` normalized, output softmax.
    meta : ModelMetadata
        Written to ``metadata_props`` (its ``opset`` is replaced by `opset`).
    path : path
        Target ``.onnx`` file; written under a temporary name and renamed
        only after verification.
    check_inputs : list of ndarray
        Real normalized patches ``(n, H, W, bands)`` to verify on, besides
        random input of two sizes.
    tolerance : float
        Maximum absolute difference of probabilities.

    Returns
    -------
    dict
        ``{"max_abs_diff": float, "checked": [shapes...]}``.

    Raises
    ------
    ExportError
        Conversion failed, or ONNX Runtime and TensorFlow disagree.
    """
    from dataclasses import replace

    import onnx

    path = Path(path)
    meta = replace(meta, opset=int(opset))
    n_bands = len(meta.input_bands)
    try:
        proto = _convert(model, n_bands, opset)
    except Exception as exc:  # tf2onnx raises many kinds; the user needs one line
        raise ExportError(f"ONNX conversion failed: {' '.join(str(exc).split())[:200]}") from None
    proto.doc_string = f"{meta.model_name} {meta.model_version}: land-cover Attention U-Net (snap-progressive-classifier)"
    del proto.metadata_props[:]
    for key, value in meta.to_props().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    tmp = staged_path(path)
    onnx.save(proto, str(tmp))
    try:
        session, _ = open_session(tmp)
        rng = np.random.default_rng(seed)
        m = meta.size_multiple
        batches = [rng.normal(size=(2, 2 * m, 3 * m, n_bands)).astype("float32"),
                   rng.normal(size=(1, 5 * m, 4 * m, n_bands)).astype("float32")]
        batches += [np.asarray(b, dtype="float32") for b in check_inputs if len(b)]
        worst = 0.0
        for x in batches:
            expected = np.asarray(model(x, training=False))
            got = session.run(None, {"bands": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
            worst = max(worst, float(np.abs(got.transpose(0, 2, 3, 1) - expected).max()))
        if not worst < tolerance:
            raise ExportError(f"ONNX Runtime and TensorFlow disagree by {worst:.2e} (> {tolerance:.0e}); "
                              "the model was not written")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return {"max_abs_diff": worst, "checked": [list(b.shape) for b in batches]}

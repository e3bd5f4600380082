"""Static int8 quantization of an exported model, with an accuracy check against fp32.

ONNX Runtime's static quantization (QOperator format, per-channel int8 weights,
uint8 activations calibrated on training patches) makes the ``default``
network about 2x faster on CPUs with VNNI. The int8 model is written only if
its classes agree with the fp32 model's on the dataset's test patches at
least `min_agreement` of the time; the metadata is copied, so inference uses
it exactly like the fp32 file.

Example
-------
>>> report = quantize_model("model.onnx", "dataset/", "model.int8.onnx")   # doctest: +SKIP
>>> report["class_agreement"] > 0.98                                        # doctest: +SKIP
True
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from snap_operators.core.errors import SnapPcError
from snap_operators.core.staging import staged_path
from snap_operators.io.onnx_model import open_session

from .dataset import load_dataset_info, open_split

__all__ = ["QuantizeError", "QUANTIZATION", "quantize_file", "quantize_model"]

QUANTIZATION = "int8 static, QOperator, per-channel"


class QuantizeError(SnapPcError):
    """Quantization failed, or the int8 model disagrees too much with fp32."""


class _IntegerTensorNotes(logging.Filter):
    """Drops ONNX Runtime's warning for each integer tensor (shapes, slice indices) it leaves in
    integers: such tensors are never quantized, and the ``small`` model's 90 of them filled 700
    lines of a run's output. Its other warnings pass."""

    _NOTE = re.compile(r"Inference failed or unsupported type to quantize .*elem_type: (\d+)", re.S)
    _FLOATS = {"1", "10", "16"}  # TensorProto FLOAT, FLOAT16, BFLOAT16

    def filter(self, record: logging.LogRecord) -> bool:
        note = self._NOTE.match(record.getMessage())
        return note is None or note.group(1) in self._FLOATS


@contextlib.contextmanager
def _quiet_integer_notes():
    root, notes = logging.getLogger(), _IntegerTensorNotes()  # onnxruntime.quantization logs on the root logger
    root.addFilter(notes)
    try:
        yield
    finally:
        root.removeFilter(notes)


def quantize_file(src, dst, calibration: np.ndarray, metadata: dict[str, str]) -> None:
    """Static int8 copy of ONNX file `src` at `dst`, calibrated on NCHW windows, with `metadata`.

    Raises :class:`QuantizeError` (and leaves no `dst`) when ONNX Runtime's tools fail.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter({"bands": w[None]} for w in calibration)

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as work:
        pre = Path(work) / "pre.onnx"
        try:
            quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            with _quiet_integer_notes():
                quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QOperator, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        except Exception as exc:  # onnxruntime.quantization raises many kinds
            Path(dst).unlink(missing_ok=True)
            raise QuantizeError(f"quantization failed: {' '.join(str(exc).split())[:200]}") from None
    q = onnx.load(str(dst))
    del q.metadata_props[:]
    for key, value in metadata.items():
        q.metadata_props.add(key=key, value=value)
    onnx.save(q, str(dst))


def _patches(folder, info, split: str, meta, count: int, seed: int) -> np.ndarray:
    """Up to `count` normalized NCHW patches of one split, NaN-free."""
    xs, ys = open_split(folder, info, split)
    index = [(s, i) for s, x in enumerate(xs) for i in range(len(x))]
    if not index:
        raise QuantizeError(f"dataset {folder} has no {split} patches")
    pick = np.random.default_rng(seed).permutation(len(index))[:count]
    x = np.stack([np.asarray(xs[index[k][0]][index[k][1]], dtype="float32") for k in pick])
    x = (x - np.float32(meta.norm_mean)) / np.float32(meta.norm_std)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), np.stack([ys[index[k][0]][index[k][1]] for k in pick])


def quantize_model(model, dataset, out, *, calibration_patches: int = 32, check_patches: int = 64,
                   min_agreement: float = 0.98, seed: int = 0, overwrite: bool = False) -> dict:
    """Write an int8 copy of `model` to `out` if it agrees with fp32 well enough.

    Parameters
    ----------
    model : path
        fp32 ONNX model written by ``snap-pc train``.
    dataset : path
        Its dataset folder: training patches calibrate, test patches check.
    out : path
        int8 ONNX file to write (temporary name, renamed after the check).
    min_agreement : float
        Least share of test pixels whose class is the same in int8 and fp32.

    Returns
    -------
    dict
        ``class_agreement``, ``accuracy_fp32``, ``accuracy_int8`` (labelled
        test pixels) and ``max_abs_prob_diff``.
    """
    model, out = Path(model), Path(out)
    if not 0 <= min_agreement <= 1:  # NaN too
        raise QuantizeError(f"--min-agreement is a share of the test pixels, in [0, 1]; got {min_agreement}")
    if out.exists() and not overwrite:
        raise QuantizeError(f"{out} exists (use --overwrite)")
    if out.resolve() == model.resolve():
        raise QuantizeError("the int8 model cannot replace its fp32 input; choose another --out")
    session, meta = open_session(model)
    info = load_dataset_info(dataset)
    if list(meta.input_bands) != list(info["bands"]):
        raise QuantizeError(f"dataset bands {', '.join(info['bands'])} are not the model's "
                            f"{', '.join(meta.input_bands)}")
    calib, _ = _patches(dataset, info, "train", meta, calibration_patches, seed)
    check, labels = _patches(dataset, info, "test", meta, check_patches, seed + 1)

    tmp = staged_path(out)
    try:
        quantize_file(model, tmp, calib, {**meta.to_props(), "quantization": QUANTIZATION})
        int8, _ = open_session(tmp)
        p32 = np.concatenate([session.run(None, {"bands": check[i:i + 4]})[0] for i in range(0, len(check), 4)])
        p8 = np.concatenate([int8.run(None, {"bands": check[i:i + 4]})[0] for i in range(0, len(check), 4)])
        ids = np.asarray(meta.class_ids)
        c32, c8 = ids[p32.argmax(1)], ids[p8.argmax(1)]
        labelled = labels > 0
        report = {
            "class_agreement": float((c8 == c32).mean()),
            "accuracy_fp32": float((c32 == labels)[labelled].mean()) if labelled.any() else None,
            "accuracy_int8": float((c8 == labels)[labelled].mean()) if labelled.any() else None,
            "max_abs_prob_diff": float(np.abs(p8 - p32).max()),
            "check_patches": int(len(check)),
        }
        if report["class_agreement"] < min_agreement:
            raise QuantizeError(f"int8 classes agree with fp32 on {report['class_agreement']:.2%} of the test pixels "
                                f"(< {min_agreement:.0%}); the int8 model was not written")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return report

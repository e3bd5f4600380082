"""The ONNX model contract between training (``models/``) and inference.

A land-cover network is exchanged as one ONNX file. Its ``metadata_props``
say everything inference needs, so nothing else travels with it:

=================  ============================================================
key                value (strings; lists and objects are JSON)
=================  ============================================================
``snap_pc_schema`` ``"1"``: version of this table
``model_name``     e.g. ``"attention_unet_small"``
``model_version``  e.g. ``"1.0.0"``
``input_bands``    band names in channel order, e.g. ``["B2", ..., "NDVI"]``
``norm_mean``      per-band mean subtracted before the network (physical units)
``norm_std``       per-band standard deviation divided by
``class_ids``      class id of each output channel, e.g. ``[1, 2, 3, 4, 5]``
``class_names``    name of each class, in the same order
``class_colors``   ``[[r, g, b], ...]`` 0-255, in the same order
``size_multiple``  input height and width must be multiples of it (``2**depth``)
``halo``           recommended context in pixels around each inference tile
``opset``          ONNX opset the graph was exported with
``layout``         ``"NCHW"``: input ``(batch, bands, H, W)`` float32,
                   output ``(batch, classes, H, W)`` float32 probabilities
=================  ============================================================

This module needs only onnxruntime (a core dependency), never TensorFlow.

A small pretrained Sentinel-2 model ships in the package
(:data:`PRETRAINED_DIR`); :func:`pretrained_model` gives its file, which
``AttentionUNetInference`` reads when no ``modelFile`` is given.

Example
-------
>>> meta = ModelMetadata("m", "1", ("B2", "B3"), (0.1, 0.1), (0.05, 0.05),
...                      (1, 2), ("Water", "Bare Soil"), ((0, 0, 255), (200, 180, 140)), 8, 24, 17)
>>> ModelMetadata.from_props(meta.to_props()) == meta
True
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from ..core.errors import SnapPcError
from ..core.product import ClassInfo

SCHEMA_VERSION = "1"
LAYOUT = "NCHW"

#: metadata_props keys every model must carry.
REQUIRED_KEYS = (
    "snap_pc_schema", "model_name", "model_version", "input_bands", "norm_mean", "norm_std",
    "class_ids", "class_names", "class_colors", "size_multiple", "halo", "opset", "layout",
)


#: Folder of the pretrained models shipped in the package (``snap_operators/io/pretrained``).
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"

#: Precision -> file name of the shipped pretrained Sentinel-2 Attention U-Net in :data:`PRETRAINED_DIR`.
PRETRAINED_FILES = {"fp32": "attention_unet_s2.onnx", "int8": "attention_unet_s2.int8.onnx"}


class ModelError(SnapPcError):
    """An ONNX model file that cannot be used: unreadable, or metadata missing or wrong."""


def pretrained_model(precision: str = "fp32") -> Path:
    """The ONNX file of the pretrained Sentinel-2 Attention U-Net shipped in the package.

    It reads B2, B3, B4, B8, B11 and the indices of ``graphs/unet_inference.properties``
    (its metadata lists them) and predicts the five land-cover classes 1..5;
    ``AttentionUNetInference`` uses the fp32 file when no ``modelFile`` is given.

    Parameters
    ----------
    precision : {"fp32", "int8"}
        ``"fp32"``: the exported network; ``"int8"``: its int8 copy made with
        ``snap-pc quantize`` (``docs/unet.md`` compares their classes and accuracy).

    Returns
    -------
    Path
        The file, in :data:`PRETRAINED_DIR`.

    Raises
    ------
    ModelError
        Unknown `precision`, or the file is missing (a broken install).

    Examples
    --------
    >>> pretrained_model().name, pretrained_model("int8").name
    ('attention_unet_s2.onnx', 'attention_unet_s2.int8.onnx')
    """
    if precision not in PRETRAINED_FILES:
        raise ModelError(f"pretrained model precision {precision!r} is not one of {', '.join(PRETRAINED_FILES)}")
    path = PRETRAINED_DIR / PRETRAINED_FILES[precision]
    if not path.is_file():
        raise ModelError(f"the shipped pretrained model {path.name} is missing from {PRETRAINED_DIR} (a broken "
                         "install?): reinstall snap-progressive-classifier, or give a model file (-Pmodel=FILE)")
    return path


@dataclass(frozen=True)
class ModelMetadata:
    """What an ONNX land-cover model says about itself (see the module table)."""

    model_name: str
    model_version: str
    input_bands: tuple[str, ...]
    norm_mean: tuple[float, ...]
    norm_std: tuple[float, ...]
    class_ids: tuple[int, ...]
    class_names: tuple[str, ...]
    class_colors: tuple[tuple[int, int, int], ...]
    size_multiple: int
    halo: int
    opset: int
    layout: str = LAYOUT

    @property
    def classes(self) -> tuple[ClassInfo, ...]:
        """The output classes as the project's ``ClassInfo`` legend entries."""
        return tuple(ClassInfo(i, n, c) for i, n, c in zip(self.class_ids, self.class_names, self.class_colors))

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` key/value strings."""
        return {
            "snap_pc_schema": SCHEMA_VERSION,
            "model_name": self.model_name,
            "model_version": self.model_version,
            "input_bands": json.dumps(list(self.input_bands)),
            "norm_mean": json.dumps([float(v) for v in self.norm_mean]),
            "norm_std": json.dumps([float(v) for v in self.norm_std]),
            "class_ids": json.dumps([int(v) for v in self.class_ids]),
            "class_names": json.dumps(list(self.class_names)),
            "class_colors": json.dumps([[int(x) for x in c] for c in self.class_colors]),
            "size_multiple": str(int(self.size_multiple)),
            "halo": str(int(self.halo)),
            "opset": str(int(self.opset)),
            "layout": self.layout,
        }

    @classmethod
    def from_props(cls, props: Mapping[str, str], where: str = "model") -> "ModelMetadata":
        """Parse and validate ``metadata_props``; raises :class:`ModelError` naming the problem."""
        missing = [k for k in REQUIRED_KEYS if k not in props]
        if missing:
            raise ModelError(f"{where}: not a snap-pc model, metadata missing {', '.join(missing)} "
                             "(export it with `snap-pc train` or snap_pc_models.export)")
        if props["snap_pc_schema"] != SCHEMA_VERSION:
            raise ModelError(f"{where}: metadata schema {props['snap_pc_schema']!r} is not supported "
                             f"(this version reads {SCHEMA_VERSION!r})")

        def load(key, kind):
            try:
                value = json.loads(props[key])
            except (TypeError, ValueError):
                raise ModelError(f"{where}: metadata '{key}' is not valid JSON: {props[key][:60]!r}") from None
            if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
                what = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
                raise ModelError(f"{where}: metadata '{key}' must be a JSON list of {what}")
            return value

        def integer(key, minimum):
            try:
                value = int(props[key])
            except ValueError:
                raise ModelError(f"{where}: metadata '{key}' must be an integer, got {props[key]!r}") from None
            if value < minimum:
                raise ModelError(f"{where}: metadata '{key}' must be >= {minimum}, got {value}")
            return value

        bands = load("input_bands", str)
        mean = [float(v) for v in load("norm_mean", (int, float))]
        std = [float(v) for v in load("norm_std", (int, float))]
        ids = load("class_ids", int)
        names = load("class_names", str)
        colors = load("class_colors", list)
        if not bands or len(set(bands)) != len(bands):
            raise ModelError(f"{where}: metadata 'input_bands' must list distinct band names")
        if not (len(mean) == len(std) == len(bands)):
            raise ModelError(f"{where}: metadata has {len(bands)} input bands but {len(mean)} means and {len(std)} stds")
        if not all(math.isfinite(m) for m in mean) or not all(math.isfinite(s) and s > 0 for s in std):
            raise ModelError(f"{where}: metadata 'norm_mean'/'norm_std' must be finite, with std > 0")
        if not ids or not (len(ids) == len(names) == len(colors)):
            raise ModelError(f"{where}: metadata has {len(ids)} class ids, {len(names)} names, {len(colors)} colors")
        if len(set(ids)) != len(ids) or not all(1 <= i <= 254 for i in ids):
            raise ModelError(f"{where}: metadata 'class_ids' must be distinct ids in 1..254 (0 and 255 are reserved)")
        if not all(len(c) == 3 and all(isinstance(x, int) and 0 <= x <= 255 for x in c) for c in colors):
            raise ModelError(f"{where}: metadata 'class_colors' must be [r, g, b] triples in 0..255")
        if props["layout"] != LAYOUT:
            raise ModelError(f"{where}: metadata 'layout' {props['layout']!r} is not supported (expected {LAYOUT})")
        return cls(
            model_name=props["model_name"], model_version=props["model_version"], input_bands=tuple(bands),
            norm_mean=tuple(mean), norm_std=tuple(std), class_ids=tuple(ids), class_names=tuple(names),
            class_colors=tuple(tuple(c) for c in colors), size_multiple=integer("size_multiple", 1),
            halo=integer("halo", 0), opset=integer("opset", 1), layout=props["layout"],
        )


def open_session(path: str | Path, providers: Sequence[str] | None = None, options=None):
    """An ONNX Runtime session and the validated metadata of a model file.

    Parameters
    ----------
    path : str or Path
        ONNX file written by ``snap-pc train``.
    providers : list of str, optional
        Execution providers in preference order (default: CPU).
    options : onnxruntime.SessionOptions, optional

    Returns
    -------
    (onnxruntime.InferenceSession, ModelMetadata)

    Raises
    ------
    ModelError
        Missing or unreadable file, metadata missing or wrong, or a graph
        whose input/output does not match the metadata.
    """
    import onnxruntime as ort

    p = Path(path).expanduser()
    if not p.is_file():
        raise ModelError(f"model file not found: {p}")
    try:
        session = ort.InferenceSession(str(p), sess_options=options, providers=list(providers or ["CPUExecutionProvider"]))
    except Exception as exc:  # onnxruntime raises its own exception types for corrupt files
        text = " ".join(str(exc).split())[:200]
        raise ModelError(f"cannot load ONNX model {p}: {text}") from None
    meta = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map, where=str(p))
    check_signature(session, meta, where=str(p))
    return session, meta


def read_metadata(path: str | Path) -> ModelMetadata:
    """The validated metadata of an ONNX model file (see :func:`open_session`)."""
    return open_session(path)[1]


def check_signature(session, meta: ModelMetadata, where: str = "model") -> None:
    """Refuse a graph whose single input/output disagrees with its metadata."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"{where}: expected one input and one output, got {len(inputs)} and {len(outputs)}")
    shape_in, shape_out = inputs[0].shape, outputs[0].shape
    if len(shape_in) != 4 or len(shape_out) != 4:
        raise ModelError(f"{where}: input and output must be 4-D {LAYOUT}, got {shape_in} and {shape_out}")
    if isinstance(shape_in[1], int) and shape_in[1] != len(meta.input_bands):
        raise ModelError(f"{where}: graph input has {shape_in[1]} channels but the metadata lists "
                         f"{len(meta.input_bands)} bands")
    if isinstance(shape_out[1], int) and shape_out[1] != len(meta.class_ids):
        raise ModelError(f"{where}: graph output has {shape_out[1]} channels but the metadata lists "
                         f"{len(meta.class_ids)} classes")
    for dim, name in ((shape_in[2], "height"), (shape_in[3], "width")):
        if isinstance(dim, int) and dim % meta.size_multiple:
            raise ModelError(f"{where}: fixed input {name} {dim} is not a multiple of {meta.size_multiple}")

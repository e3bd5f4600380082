"""models.quantize: what of ONNX Runtime's quantization output reaches the user."""

from __future__ import annotations

import logging

import pytest

pytest.importorskip("snap_pc_models", reason="the training package (models/) is not installed")

from snap_pc_models.quantize import _quiet_integer_notes  # noqa: E402


def _note(elem_type: int) -> str:  # as onnxruntime.quantization.onnx_quantizer words it
    return (f"Inference failed or unsupported type to quantize for tensor 'up2/sub:0', type is tensor_type {{\n"
            f"  elem_type: {elem_type}\n  shape {{\n  }}\n}}\n.")


def test_only_the_notes_on_integer_tensors_are_dropped(caplog):
    with caplog.at_level(logging.WARNING), _quiet_integer_notes():
        logging.warning(_note(6))  # int32: never quantized, said 90 times for the small model
        logging.warning(_note(7))  # int64
        logging.warning(_note(1))  # a float tensor it could not type: worth seeing
        logging.warning("Please consider to run pre-processing before quantization.")
    assert [r.getMessage() for r in caplog.records] == [
        _note(1), "Please consider to run pre-processing before quantization."]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        logging.warning(_note(6))  # the filter is gone once quantization is done
    assert len(caplog.records) == 1

"""SNAP Python operator ``AttentionUNetInference``: the module SNAP's PyOperator loads (descriptor snap_pc_unet_inference-info.xml)."""

from snap_operators.snap.adapter import make_operator_class

AttentionUNetInferenceOp = make_operator_class("AttentionUNetInference")

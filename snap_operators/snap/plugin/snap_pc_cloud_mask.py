"""SNAP Python operator ``CloudMask``: the module SNAP's PyOperator loads (descriptor snap_pc_cloud_mask-info.xml)."""

from snap_operators.snap.adapter import make_operator_class

CloudMaskOp = make_operator_class("CloudMask")

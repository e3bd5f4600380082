"""SNAP Python operator ``ChangeDetection``: the module SNAP's PyOperator loads (descriptor snap_pc_change_detection-info.xml)."""

from snap_operators.snap.adapter import make_operator_class

ChangeDetectionOp = make_operator_class("ChangeDetection")

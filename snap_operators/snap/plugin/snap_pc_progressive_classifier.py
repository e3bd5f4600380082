"""SNAP Python operator ``ProgressiveClassifier``: the module SNAP's PyOperator loads (descriptor snap_pc_progressive_classifier-info.xml)."""

from snap_operators.snap.adapter import make_operator_class

ProgressiveClassifierOp = make_operator_class("ProgressiveClassifier")

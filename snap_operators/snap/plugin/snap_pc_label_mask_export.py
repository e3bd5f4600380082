"""SNAP Python operator ``LabelMaskExport``: the module SNAP's PyOperator loads (descriptor snap_pc_label_mask_export-info.xml)."""

from snap_operators.snap.adapter import make_operator_class

LabelMaskExportOp = make_operator_class("LabelMaskExport")

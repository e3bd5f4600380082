"""SNAP Python operator ``SpectralIndices``: the module SNAP's PyOperator loads (descriptor snap_pc_spectral_indices-info.xml)."""

from snap_operators.snap.adapter import make_operator_class

SpectralIndicesOp = make_operator_class("SpectralIndices")

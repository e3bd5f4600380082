"""The science, apart from the engine: plain functions over numpy tiles.

Indices, scene-adaptive thresholds, input guards, cloud masks, rule sets and
the classifier compiled from them, vectorization (regions, outlines), ONNX
inference and change detection.
"""

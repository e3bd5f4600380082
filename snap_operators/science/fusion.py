"""Rule fusion: the rules' class where their thresholds are sure, a network's elsewhere.

A network trained on the Progressive Classifier's label masks learns their
mistakes with their knowledge, and on a scene unlike its training scenes it
makes mistakes of its own where the rules have none: turbid flood water
called built-up, a village's gardens called trees (``docs/unet.md``). The
rules' own uncertainty is known per pixel: the rule *margin*
(:mod:`snap_operators.science.margin`), the distance to the nearest threshold
that would change the pixel's class, in units of the scene's interquartile
range of the deciding index. Where that margin is large the rules are right
0.96 to 1.00 of the time against independent references; their errors sit
at the thresholds, where a network's spatial context helps. Fusion keeps
the rules' class where the margin reaches ``min_margin`` and hands the rest
to the network: the pixels next to a threshold, and those the rules left
unclassified.

Class coding, as in every class map of the project: 1..253 classes, 0
unclassified, 254 masked (cloud, shadow, snow), 255 no-data.

Example
-------
>>> import numpy as np
>>> rules = np.array([[1, 3, 0, 4]], dtype=np.uint8)
>>> margin = np.array([[0.5, 0.01, 0.2, np.nan]], dtype=np.float32)
>>> network = np.array([[3, 4, 2, 5]], dtype=np.uint8)
>>> fuse_classes(rules, margin, network, 0.03).tolist()   # sure water kept; the rest the network's
[[1, 4, 2, 5]]
"""

from __future__ import annotations

import math

import numpy as np

from ..core.legend import MASKED, NO_DATA

__all__ = ["DEFAULT_MIN_MARGIN", "RULES", "NETWORK", "sure_pixels", "fuse_classes", "fusion_tile"]

#: Least rule margin (scene interquartile ranges) at which the rules' class is kept. Chosen on the
#: benchmark's real scenes as the largest margin at which no U-Net of the benchmark (own rule
#: masks and left out, seeds 0, 1, 2) scores under the rules' overall accuracy or loses more than
#: 0.05 of a class's recall (docs/unet.md, "Rules where they are sure").
DEFAULT_MIN_MARGIN = 0.03
#: Codes of the optional source band: which map a pixel's class comes from (0 where neither has data).
RULES, NETWORK = 1, 2


def sure_pixels(rules: np.ndarray, margin: np.ndarray, min_margin: float) -> np.ndarray:
    """Where the rules keep their class: a class (1..253) with a margin of at least `min_margin`.

    Parameters
    ----------
    rules : numpy.ndarray
        Integer class map of the Progressive Classifier, any shape.
    margin : numpy.ndarray
        Its rule margin (same shape; NaN where it has none).
    min_margin : float
        Least margin, in scene interquartile ranges; ``inf`` keeps no pixel of the rules.

    Returns
    -------
    numpy.ndarray
        bool, same shape.

    Examples
    --------
    >>> sure_pixels(np.array([1, 1, 0, 254]), np.array([0.1, 0.0, 9.0, 9.0]), 0.03).tolist()
    [True, False, False, False]
    """
    if math.isinf(min_margin) and min_margin > 0:
        return np.zeros(np.shape(rules), dtype=bool)
    rules = np.asarray(rules)
    is_class = (rules >= 1) & (rules != MASKED) & (rules != NO_DATA)
    with np.errstate(invalid="ignore"):
        return is_class & (np.asarray(margin) >= min_margin)


def fuse_classes(rules: np.ndarray, margin: np.ndarray, network: np.ndarray, min_margin: float) -> np.ndarray:
    """The rules' class where they are sure (:func:`sure_pixels`), the network's elsewhere.

    Parameters
    ----------
    rules, network : numpy.ndarray
        Class maps of one grid (same shape; integer codes, or whole numbers in a float `rules`).
    margin : numpy.ndarray
        The rules' margin, float, same shape.
    min_margin : float
        Least margin at which the rules' class is kept (scene interquartile ranges).

    Returns
    -------
    numpy.ndarray
        Class map, the network's dtype.
    """
    return fusion_tile({"rules": rules, "margin": margin, "network": network}, min_margin)["class_id"]


def fusion_tile(tiles: dict[str, np.ndarray], min_margin: float, source: bool = False,
                network_no_data: int = NO_DATA) -> dict[str, np.ndarray]:
    """The per-tile function of ``RuleFusion``: ``{'rules', 'margin', 'network'}`` ->
    ``{'class_id'[, 'fusion_source']}``.

    ``fusion_source`` is :data:`RULES` or :data:`NETWORK` by where each class comes from, 0 where
    the fused class is the network's no-data. Without ``'rules'`` (``RuleFusion`` with an infinite
    least margin reads none) every class is the network's.
    """
    network = np.asarray(tiles["network"])
    sure = (sure_pixels(tiles["rules"], tiles["margin"], min_margin) if "rules" in tiles
            else np.zeros(network.shape, dtype=bool))
    # the rules' class map may be float (read back from a GeoTIFF written with its margin): cast after
    # the choice, so that its no-data NaN, never chosen, is never cast
    out = {"class_id": np.where(sure, tiles.get("rules", network), network).astype(network.dtype)}
    if source:
        origin = np.where(sure, np.uint8(RULES), np.uint8(NETWORK))
        out["fusion_source"] = np.where(~sure & (network == network_no_data), np.uint8(0), origin)
    return out

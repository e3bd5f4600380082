"""Threshold moving: one bias per class on the network's logits, so that each class is predicted
on as many training pixels as its labels cover.

Class-balanced patches and class weights let a network learn a class that holds 0.5 % of the
pixels, at the price of a distorted prior: it then over-predicts some rare classes (the rules'
errors among them, when the rare labels are the noisy ones) and may still predict another
nowhere. Moving the decision thresholds back to the labels' class shares after training
(oversampling followed by thresholding, Buda, Maki & Mazurowski 2018) keeps the features learned
from balanced draws and restores the scene's proportions at the decision. The bias is added to
the last layer's, so inference costs nothing more and the ONNX contract is unchanged.
"""

from __future__ import annotations

import numpy as np

__all__ = ["class_share_bias"]

#: Steps of the bias search; each is one argmax over the sampled pixels.
ITERATIONS = 400


def class_share_bias(log_probs: np.ndarray, labels: np.ndarray, iterations: int = ITERATIONS) -> np.ndarray:
    """Per-class biases that make ``argmax(log_probs + bias)`` predict each class on its label share.

    Classes with no label keep their logits (they are not in the target). The search moves each
    labelled class's bias by a decreasing step times ``log(label share / predicted share)``, the
    multiplicative update of iterative proportional fitting, and keeps the iterate whose
    predicted shares are closest to the labels' (total variation).

    Parameters
    ----------
    log_probs : ndarray, shape (n, classes)
        The network's log-probabilities (or logits) of labelled pixels.
    labels : ndarray of int, shape (n,)
        Their label, as an index into the classes (0 .. classes - 1).
    iterations : int
        Steps of the search.

    Returns
    -------
    ndarray of float32, shape (classes,)
        Bias to add to the logits, mean 0 over the labelled classes.

    Examples
    --------
    A class the network never predicts, though a third of the labels hold it:

    >>> lp = np.log(np.array([[0.6, 0.4]] * 3 + [[0.7, 0.3]] * 3))
    >>> b = class_share_bias(lp, np.array([0, 0, 0, 0, 1, 1]))
    >>> np.bincount(np.argmax(lp + b, axis=1), minlength=2).tolist()
    [3, 3]
    """
    log_probs = np.asarray(log_probs, dtype=np.float64)
    labels = np.asarray(labels)
    n, k = log_probs.shape
    if n == 0:
        return np.zeros(k, dtype=np.float32)
    target = np.bincount(labels, minlength=k)[:k] / n
    labelled = target > 0
    floor = 0.5 / n  # a class predicted nowhere counts as half a pixel: the step stays finite
    bias = np.zeros(k)
    best, best_gap = bias.copy(), np.inf
    for t in range(iterations):
        share = np.bincount(np.argmax(log_probs + bias, axis=1), minlength=k) / n
        gap = 0.5 * np.abs(share - target).sum()
        if gap < best_gap:
            best, best_gap = bias.copy(), gap
        if gap == 0:
            break
        step = 0.5 / (1 + t / 50)
        bias[labelled] += step * (np.log(target[labelled]) - np.log(np.maximum(share[labelled], floor)))
    return (best - best[labelled].mean()).astype(np.float32)

"""Threshold moving: biases that bring each class's predicted share to its label share."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from snap_pc_models.thresholds import class_share_bias


def _shares(log_probs, bias=0.0):
    k = log_probs.shape[1]
    return np.bincount(np.argmax(log_probs + bias, axis=1), minlength=k) / len(log_probs)


def test_a_class_predicted_nowhere_gets_its_label_share_back():
    rng = np.random.default_rng(0)
    target = np.array([0.5, 0.3, 0.15, 0.05])
    labels = rng.choice(4, size=20000, p=target)
    logits = rng.normal(size=(20000, 4)) + 2.0 * np.eye(4)[labels]
    logits[:, 3] -= 6.0  # the network has all but given up on class 3
    assert _shares(logits)[3] == 0
    bias = class_share_bias(logits, labels)
    after = _shares(logits, bias)
    np.testing.assert_allclose(after, np.bincount(labels) / len(labels), atol=0.005)
    assert abs(float(bias.mean())) < 1e-6 and bias[3] - bias[:3].mean() > 4


def test_a_model_already_at_the_label_shares_is_left_alone():
    logits = np.log(np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8]]))
    bias = class_share_bias(logits, np.array([0, 0, 1, 1]))
    np.testing.assert_array_equal(bias, [0, 0])


def test_classes_without_labels_are_no_target():
    logits = np.log(np.array([[0.5, 0.3, 0.2]] * 4 + [[0.2, 0.7, 0.1]] * 4))
    bias = class_share_bias(logits, np.array([0] * 6 + [1] * 2))  # class 2: no label
    assert _shares(logits, bias).tolist() == [0.5, 0.5, 0.0]  # as close to 6:2 as these two groups allow
    assert class_share_bias(np.zeros((0, 3)), np.zeros(0, int)).tolist() == [0, 0, 0]


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 6), st.integers(1, 400))
def test_the_shares_never_move_away_from_the_labels(seed, k, n):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=rng.uniform(0.1, 5), size=(n, k)) + rng.normal(scale=3, size=k)
    labels = rng.integers(0, k, size=n)
    target = np.bincount(labels, minlength=k) / n
    bias = class_share_bias(logits, labels)
    assert bias.shape == (k,) and np.isfinite(bias).all()
    gap = np.abs(_shares(logits, bias) - target).sum()
    assert gap <= np.abs(_shares(logits) - target).sum() + 1e-12

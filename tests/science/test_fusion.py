"""snap_operators.science.fusion: the rules' class where their margin is large, the network's elsewhere."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

from snap_operators.science.fusion import NETWORK, RULES, fuse_classes, fusion_tile, sure_pixels

CODES = st.sampled_from([0, 1, 2, 3, 4, 5, 254, 255])
MARGINS = st.one_of(st.floats(0, 5, width=32), st.just(math.inf), st.just(math.nan))


def test_each_kind_of_pixel():
    rules = np.array([1, 3, 3, 0, 254, 255, 4], np.uint8)
    margin = np.array([0.5, 0.03, 0.029, 9.0, 9.0, np.nan, np.inf], np.float32)
    network = np.array([3, 4, 4, 2, 1, 255, 5], np.uint8)
    # sure water, exactly at the margin, just under it, unclassified, masked, no-data, catch-all (inf)
    assert fuse_classes(rules, margin, network, 0.03).tolist() == [1, 3, 4, 2, 1, 255, 4]
    out = fusion_tile({"rules": rules, "margin": margin, "network": network}, 0.03, source=True)
    assert out["fusion_source"].tolist() == [RULES, RULES, NETWORK, NETWORK, NETWORK, 0, RULES]
    assert out["class_id"].dtype == np.uint8


def test_infinity_is_the_network_and_zero_the_rules_wherever_they_classify():
    rules = np.array([1, 2, 0, 254], np.uint8)
    margin = np.array([np.inf, 0.0, 1.0, 1.0], np.float32)
    network = np.array([5, 5, 5, 5], np.uint8)
    assert fuse_classes(rules, margin, network, math.inf).tolist() == [5, 5, 5, 5]
    assert fuse_classes(rules, margin, network, 0.0).tolist() == [1, 2, 5, 5]


@given(hnp.arrays(np.uint8, 20, elements=CODES), hnp.arrays(np.float32, 20, elements=MARGINS),
       hnp.arrays(np.uint8, 20, elements=CODES), st.floats(0, 2))
def test_every_pixel_is_one_of_the_two_and_a_larger_margin_hands_more_to_the_network(rules, margin, network, m):
    fused = fuse_classes(rules, margin, network, m)
    sure = sure_pixels(rules, margin, m)
    assert ((fused == rules) | (fused == network)).all()
    np.testing.assert_array_equal(fused[~sure], network[~sure])
    assert not (sure & ~np.isin(rules, [1, 2, 3, 4, 5])).any()  # never unclassified, masked or no-data
    assert (sure_pixels(rules, margin, m + 0.5) <= sure).all()

"""``python -m vknet_core.summary``: exact parameter count of the official R-50 model."""

from __future__ import annotations

import json

import pytest

from vknet_core import summary


def test_kitti_step_r50_has_the_official_used_parameter_count(capsys):
    assert summary.main(["kitti_step_r50", "--height", "128", "--width", "256"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # K-Net R-50 37,419,660 + one linking block 1,315,072 + embedding head 329,216
    assert last["params"] == 39_063_948
    assert last["params_per_part"]["linker"] == 1_315_072
    assert last["params_per_part"]["embed_head"] == 329_216
    assert 1.0 < last["gmacs"] < 10.0


def test_rejects_sizes_that_are_not_multiples_of_32():
    with pytest.raises(ValueError, match="multiples of 32, got 100x256"):
        summary.summarize("tiny", 100, 256)

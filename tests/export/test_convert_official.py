"""convert_official: the dataset named in an official file's meta is checked, files are loaded
with the safe loader, and ``--allow-pickle`` is the explicit way past it."""

import logging

import numpy as np
import pytest
import torch

from vknet_core.official import ConversionError
from vknet_export.convert_official import (
    UnsafeCheckpointError,
    check_dataset,
    main,
    official_datasets,
    read_official,
)

KITTI_EXP = (
    "video_knet_s3_r50_rpn_1x_kitti_step_sigmoid_stride2_mask_embed_link_ffn_joint_train.py"
)


@pytest.mark.parametrize(
    "meta, expected",
    [
        ({"exp_name": KITTI_EXP}, {"kitti_step"}),
        (
            {
                "config": "dataset_type = 'CityscapesDVPSDataset'\n"
                "data_root = 'data/cityscapes_vps/'"
            },
            {"cityscapes_vps"},
        ),
        ({"config": "data_root = 'data/VIPSeg/'"}, {"vipseg"}),
        ({"config": "model = dict(type='KNet')"}, set()),
        ({}, set()),
        (None, set()),
    ],
)
def test_datasets_named_by_the_meta(meta, expected):
    assert official_datasets(meta) == expected


def test_other_dataset_stops_and_missing_meta_warns(tmp_path, caplog):
    with pytest.raises(ConversionError, match="trained on kitti_step .* 'cityscapes_vps_r50'"):
        check_dataset({"exp_name": KITTI_EXP}, "cityscapes_vps_r50", tmp_path / "x.pth")
    check_dataset({"exp_name": KITTI_EXP}, "kitti_step_r50", tmp_path / "x.pth")
    with caplog.at_level(logging.WARNING):
        check_dataset({}, "cityscapes_vps_r50", tmp_path / "x.pth")
    assert "cannot check that it was trained on cityscapes_vps" in caplog.text


def test_safe_loader_and_allow_pickle(tmp_path, capsys):
    path = tmp_path / "official.pth"
    sd = {"module.backbone.conv1.weight": torch.ones(64, 3, 7, 7)}
    torch.save({"state_dict": sd, "meta": {"epoch": np.float64(12.0)}}, path)
    with pytest.raises(UnsafeCheckpointError, match="numpy.* --allow-pickle"):
        read_official(path)
    official, meta = read_official(path, allow_pickle=True)
    assert list(official) == ["backbone.conv1.weight"] and meta == {"epoch": 12.0}
    out = tmp_path / "ours.pt"
    # past the loader, the one-key file is not a whole model: one line, nothing written
    rc = main(
        [
            "--preset",
            "kitti_step_r50",
            "--input",
            str(path),
            "--output",
            str(out),
            "--allow-pickle",
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert err.count("\n") == 1 and "cannot convert to preset 'kitti_step_r50'" in err

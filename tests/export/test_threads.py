"""make_backend's thread settings: the robot defaults and explicit counts (README "Threads")."""

from __future__ import annotations

import torch

from vknet_core.runtime import ROBOT_TORCH_THREADS
from vknet_export.backends import make_backend


def test_torch_backend_defaults_to_robot_threads(tiny_checkpoint):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        make_backend("torch", tiny_checkpoint).close()
        assert torch.get_num_threads() == ROBOT_TORCH_THREADS == 1
        make_backend("torch", tiny_checkpoint, threads=2).close()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_ort_backend_threads_do_not_spin(tiny_onnx):
    for threads, expected in ((None, 0), (2, 2)):  # 0: ORT's default, one per core
        be = make_backend("onnxruntime", tiny_onnx, threads=threads)
        opts = be._session.get_session_options()
        assert opts.intra_op_num_threads == expected
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        be.close()

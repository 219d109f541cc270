"""Kept for existing imports: the per-frame contract lives in ``vknet_core.io_spec``."""

from vknet_core.io_spec import *  # noqa: F403
from vknet_core.io_spec import __all__  # noqa: F401

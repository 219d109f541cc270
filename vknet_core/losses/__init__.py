"""Video K-Net losses: Hungarian matcher, mask/class losses, tracking losses, the criterion."""

from vknet_core.losses.criterion import LossConfig, VideoKNetCriterion
from vknet_core.losses.matcher import HungarianMatcher, MatchCosts

__all__ = ["HungarianMatcher", "LossConfig", "MatchCosts", "VideoKNetCriterion"]

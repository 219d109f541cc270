"""STQ and VPQ exactly as the reference evaluators define them (``shared/reference/metrics.md``).

Videos are lists of ``[T, H, W]`` integer arrays of panoptic ids (``semantic * label_divisor +
instance``; void = ``ignore_label * label_divisor``)::

    from vknet_core.metrics import stq, vpq
    s = stq(gt_videos, pred_videos, num_classes=19, things=(11, 13), label_divisor=1000,
            ignore_label=255)
    v = vpq(gt_videos, pred_videos, num_classes=19, things=(11, 13), label_divisor=1000,
            ignore_label=255, k=0)
    s["STQ"], s["AQ"], s["SQ"], v["VPQ"], v["VPQ_thing"], v["VPQ_stuff"]

The accumulators stream frame by frame: ``acc.update(gt, pred, sequence_id)``, then
``acc.result()``.
"""

from vknet_core.metrics.stq import STQAccumulator, stq
from vknet_core.metrics.vpq import VPQAccumulator, vpq, vpq_windows

__all__ = ["STQAccumulator", "VPQAccumulator", "stq", "vpq", "vpq_windows"]

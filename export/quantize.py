"""``python export/quantize.py --help``; the logic lives in ``vknet_training.quantize`` (frame
sources and the STQ/VPQ report need the dataset readers and metrics) around
``vknet_export.quantize`` (the int8 conversion itself)."""

import sys

from vknet_training.quantize import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

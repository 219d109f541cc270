"""``python export/to_onnx.py --help``; the logic lives in ``vknet_export.to_onnx``."""

import sys

from vknet_export.to_onnx import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

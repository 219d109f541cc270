"""``python export/to_trt.py --help``; the logic lives in ``vknet_export.to_trt``."""

import sys

from vknet_export.to_trt import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

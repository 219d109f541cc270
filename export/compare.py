"""``python export/compare.py --help``; the logic lives in ``vknet_export.compare``."""

import sys

from vknet_export.compare import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``python training/run_video.py --help``; the logic lives in ``vknet_training.run_video``."""

import sys

from vknet_training.run_video import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

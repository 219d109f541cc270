"""``python training/train.py --help``; the logic lives in ``vknet_training.train``."""

import sys

from vknet_training.train import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

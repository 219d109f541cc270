"""``python training/evaluate.py --help``; the logic lives in ``vknet_training.evaluate``."""

import sys

from vknet_training.evaluate import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

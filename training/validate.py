"""``python training/validate.py --help``; the logic lives in ``vknet_training.validate``."""

import sys

from vknet_training.validate import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

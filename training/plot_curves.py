"""``python training/plot_curves.py --help``; the logic lives in ``vknet_training.plot_curves``."""

import sys

from vknet_training.plot_curves import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``python training/make_synthetic.py --help``.

The logic lives in ``vknet_training.make_synthetic``.
"""

import sys

from vknet_training.make_synthetic import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""``python export/convert_official.py --help``.

The logic lives in ``vknet_export.convert_official``.
"""

import sys

from vknet_export.convert_official import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

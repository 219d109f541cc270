"""``python -m vknet_ros --ros-args -p backend:=torch -r image:=/camera/image_raw``."""

import sys

from vknet_ros.run_node import main

if __name__ == "__main__":
    raise SystemExit(main(sys.argv))

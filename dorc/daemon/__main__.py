"""``python -m dorc.daemon serve FOLDER``: the daemon process (``dorc daemon start`` starts it)."""

import sys

from .server import main

if __name__ == "__main__":
    if sys.argv[1:2] != ["serve"]:
        sys.exit("usage: python -m dorc.daemon serve FOLDER (dorc daemon start runs it)")
    main(sys.argv[2:])

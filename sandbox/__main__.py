"""``python -m sandbox``: the development sandbox's command line (see ``sandbox/cli.py``).

Run it from a checkout with the sandbox extra installed (``make install`` does, or
``pip install -e '.[sandbox]'``): ``python -m sandbox run`` starts it, ``say`` and ``drill``
talk to it from another terminal.
"""

from __future__ import annotations

import sys

from sandbox.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""
The command line for operators, C{python -m gateway.ctl}: see
L{gateway.ops.ctl}, and docs/status.md.
"""

import sys

from gateway.ops.ctl import main

if __name__ == "__main__":
    sys.exit(main())

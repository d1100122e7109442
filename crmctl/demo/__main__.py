"""``make demo`` / ``python -m crmctl.demo``: see :mod:`crmctl.demo.run`."""

import sys

from crmctl.demo.run import main

sys.exit(main())

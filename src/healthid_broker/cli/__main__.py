"""``python -m healthid_broker.cli``: the same as the ``healthid-broker`` command."""

import sys

from . import main

sys.exit(main())

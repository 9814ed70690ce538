"""``python -m torchgrade``: the ``torchgrade`` command (:mod:`torchgrade.instructor.cli`)."""

import sys

from torchgrade.instructor.cli import main

sys.exit(main())

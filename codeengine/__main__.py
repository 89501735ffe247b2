"""``python -m codeengine``: the same as the ``codeengine`` command."""

import sys

from codeengine.cli import main

sys.exit(main())

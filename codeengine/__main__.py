"""``python -m codeengine``: the same as the ``codeengine`` command."""

import sys

from codeengine.ops.cli import main

sys.exit(main())

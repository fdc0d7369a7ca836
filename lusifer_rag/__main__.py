"""``python -m lusifer_rag`` == the ``lusifer-rag`` command."""

import sys

from lusifer_rag.cli import main

sys.exit(main())

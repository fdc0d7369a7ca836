"""``python -m lusifer_rag.train.data_prep OUT_DIR``: see ``lusifer_rag.train.data_prep.main``."""

from lusifer_rag.train.data_prep import main

raise SystemExit(main())

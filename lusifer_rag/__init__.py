"""lusifer-rag: multilingual search and question answering over your documents."""

__version__ = "0.1.0"

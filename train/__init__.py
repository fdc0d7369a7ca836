"""Training LUSIFER: stage 1 (alignment) and stage 2 (representation fine-tuning), on the model stages of
``lusifer_rag.embedder.lusifer`` (one model definition). Submodules are imported where needed."""

"""A local causal LM from a directory (``save_pretrained`` layout with a chat template), loaded once.

Greedy decoding by default, so the same prompt gives the same answer streamed or not. Streaming runs
``generate`` in a thread and reads decoded text from a ``TextIteratorStreamer``. One generation at a
time per backend (a lock): a model on one device gains nothing from interleaved ``generate`` calls.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lusifer_rag.errors import ConfigError, LLMError

from ..prompt import Prompt
from .base import LLMBackend, register_llm


@register_llm("transformers", "local causal LM with a chat template; transformers:<model dir>")
class TransformersBackend(LLMBackend):
    name = "transformers"

    def __init__(
        self,
        model_dir: str | None = None,
        *,
        device: str | None = None,
        dtype: str | None = None,
        max_new_tokens: int = 512,
        temperature: float = 0.0,
        top_p: float = 1.0,
        repetition_penalty: float | None = None,
        trust_remote_code: bool = False,
        stream_timeout: float = 600.0,
    ):
        if not model_dir:
            raise ConfigError("the transformers LLM backend needs a model directory: 'transformers:/path/to/model' "
                              "or model_dir=...")
        path = Path(model_dir).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(f"LLM model directory {str(path)!r} has no config.json (a save_pretrained directory "
                              "with the model and its tokenizer is expected)")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from lusifer_rag.embedder.devices import resolve_devices, resolve_dtype

        self.device = resolve_devices(device)[0]
        self.dtype = resolve_dtype(dtype, self.device)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype,
                                                              trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as e:
            raise LLMError(f"cannot load the causal LM in {str(path)!r}: {e}") from e
        if not self.tokenizer.chat_template:
            raise ConfigError(f"the tokenizer in {str(path)!r} has no chat_template; use an instruct/chat model")
        self.model.to(self.device).eval()
        self.model_dir = str(path)
        self.max_new_tokens = max_new_tokens
        self.temperature, self.top_p, self.repetition_penalty = float(temperature), float(top_p), repetition_penalty
        self.stream_timeout = stream_timeout
        self._lock = threading.Lock()
        self._torch = torch

    # ---- LLMBackend ---------------------------------------------------------------------------
    @property
    def context_tokens(self) -> int | None:
        n = getattr(self.model.config, "max_position_embeddings", None)
        return int(n) if n else None

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model_dir": self.model_dir, "device": str(self.device), "dtype": str(self.dtype)}

    def generate(self, prompt: Prompt, *, stream: bool = False) -> Iterator[str]:
        inputs = self._encode(prompt)
        if stream:
            return self._stream(inputs)
        return iter([self._complete(inputs)])

    # ---- internals ----------------------------------------------------------------------------
    def _encode(self, prompt: Prompt) -> dict:
        enc = self.tokenizer.apply_chat_template(prompt.messages, add_generation_prompt=True, return_tensors="pt",
                                                 return_dict=True)
        enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        limit = self.context_tokens
        if limit is not None and enc["input_ids"].shape[1] + self.max_new_tokens > limit:
            raise LLMError(f"prompt of {enc['input_ids'].shape[1]} tokens + max_new_tokens={self.max_new_tokens} "
                           f"exceeds the model's context of {limit} tokens; lower max_source_chars or max_new_tokens")
        return enc

    def _gen_kwargs(self) -> dict:
        kw: dict[str, Any] = {"max_new_tokens": self.max_new_tokens,
                              "pad_token_id": self.tokenizer.pad_token_id or self.tokenizer.eos_token_id}
        if self.temperature > 0:
            kw.update(do_sample=True, temperature=self.temperature, top_p=self.top_p)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if self.repetition_penalty:
            kw["repetition_penalty"] = self.repetition_penalty
        return kw

    def _complete(self, inputs: dict) -> str:
        with self._lock, self._torch.inference_mode():
            out = self.model.generate(**inputs, **self._gen_kwargs())  # (1, prompt + new)
        new = out[0, inputs["input_ids"].shape[1]:]  # (new,)
        return self.tokenizer.decode(new, skip_special_tokens=True)

    def _stream(self, inputs: dict) -> Iterator[str]:
        from transformers import TextIteratorStreamer

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True,
                                        timeout=self.stream_timeout)
        failure: list[BaseException] = []

        def run() -> None:
            try:
                with self._torch.inference_mode():
                    self.model.generate(**inputs, **self._gen_kwargs(), streamer=streamer)
            except BaseException as e:  # surfaced in the consuming thread below
                failure.append(e)
                streamer.end()

        with self._lock:
            worker = threading.Thread(target=run, name="llm-generate", daemon=True)
            worker.start()
            try:
                for text in streamer:
                    if text:
                        yield text
            finally:
                worker.join()
        if failure:
            raise LLMError(f"generation failed: {type(failure[0]).__name__}: {failure[0]}") from failure[0]

"""Token ids -> text deltas, one token at a time, without re-decoding the whole output each step.

Decoding tokens one by one is wrong for byte-level BPE (a character may span tokens) and for
tokenizers that drop a word's leading space at the start of a decode. So each step decodes a
short window of recent tokens and emits only what grew beyond the already-emitted part of it;
a trailing U+FFFD (an unfinished UTF-8 sequence) waits for the next token. vLLM does the same.
"""
from __future__ import annotations


class IncrementalDetokenizer:
    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.tokens: list[int] = []
        self._prefix_offset = 0  # window start: context that fixes spacing of the next token
        self._read_offset = 0  # tokens before this are already emitted

    def _decode(self, tokens: list[int]) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=True)

    def push(self, token_id: int) -> str:
        self.tokens.append(token_id)
        emitted = self._decode(self.tokens[self._prefix_offset:self._read_offset])
        window = self._decode(self.tokens[self._prefix_offset:])
        if len(window) <= len(emitted) or window.endswith("\ufffd"):
            return ""
        self._prefix_offset, self._read_offset = self._read_offset, len(self.tokens)
        return window[len(emitted):]

    def finish(self) -> str:
        """Whatever is still held back (an unfinished character at the very end)."""
        emitted = self._decode(self.tokens[self._prefix_offset:self._read_offset])
        window = self._decode(self.tokens[self._prefix_offset:])
        self._prefix_offset = self._read_offset = len(self.tokens)
        return window[len(emitted):]

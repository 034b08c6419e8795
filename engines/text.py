"""Text normalization and sentence-boundary chunking for TTS."""

from __future__ import annotations

import re

# Sentence ends: Latin punctuation followed by whitespace, or CJK full-width
# punctuation (which is not followed by spaces in running text).
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+|(?<=[。！？；])")
# Inside an over-long sentence, prefer clause boundaries, then any whitespace.
_CLAUSE_END = re.compile(r"(?<=[,;:，、；：])\s*")
_WHITESPACE = re.compile(r"\s+")

DEFAULT_MAX_CHUNK_CHARS = 300


def normalize_text(text: str) -> str:
    """Collapse runs of whitespace so chunk sizes reflect spoken content."""
    return _WHITESPACE.sub(" ", text).strip()


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(normalize_text(text)) if s.strip()]


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Split one over-long sentence at clause boundaries, then at spaces, then hard."""
    pieces: list[str] = []
    for clause in (c.strip() for c in _CLAUSE_END.split(sentence)):
        if not clause:
            continue
        while len(clause) > max_chars:
            cut = clause.rfind(" ", 0, max_chars + 1)
            if cut <= 0:  # no space (e.g. CJK without punctuation): hard cut
                cut = max_chars
            pieces.append(clause[:cut].strip())
            clause = clause[cut:].strip()
        if clause:
            pieces.append(clause)
    return _pack(pieces, max_chars, joiner=" ")


def _pack(parts: list[str], max_chars: int, joiner: str) -> list[str]:
    """Greedily pack consecutive parts into chunks of at most ``max_chars``."""
    chunks: list[str] = []
    current = ""
    for part in parts:
        candidate = f"{current}{joiner}{part}" if current else part
        if len(candidate) <= max_chars:
            current = candidate
            continue
        if current:
            chunks.append(current)
        current = part
    if current:
        chunks.append(current)
    return chunks


def split_into_chunks(text: str, max_chars: int = DEFAULT_MAX_CHUNK_CHARS) -> list[str]:
    """Split text at sentence boundaries into chunks of at most ``max_chars``.

    Sentences are kept whole where possible and packed together so short
    sentences don't each pay the per-call overhead of the engine.
    """
    sentences: list[str] = []
    for sentence in split_sentences(text):
        if len(sentence) <= max_chars:
            sentences.append(sentence)
        else:
            sentences.extend(_split_long(sentence, max_chars))
    return _pack(sentences, max_chars, joiner=" ")

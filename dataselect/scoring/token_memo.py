"""Exact, memoised tokenisation for BERT-style tokenizers (BertNormalizer + BertPreTokenizer), the
CPU half of DSIR's `tokens` featuriser.

Their normaliser works character by character and their pre-tokeniser splits at whitespace and
around punctuation, so the ids of a text are the ids of its pieces, each tokenised on its own:
  - in an ASCII text, the pre-tokens (runs of letters and digits, and every other visible character
    alone), lowercased first when the normaliser lowercases;
  - in any other text, the runs between ASCII whitespace (the tokenizer splits there too; what it
    splits inside a run, it splits the same way when the run is alone).
Each distinct piece is tokenised once; its ids are kept in flat arrays, so a batch's ids are
gathered with numpy. Finding and looking up the pieces is numpy too, with no Python object per
piece: the batch is one byte buffer, the pieces are found from per-byte classes, and each piece of
at most 16 bytes is packed into two uint64 words (zero-padded; no piece holds a zero byte, so the
packing is one-to-one, hence exact) and looked up in an open-addressing hash table (PieceTable).
Longer pieces (about 0.1% of them in instruction data) go through a dict.

A new ASCII pre-token goes through the WordPiece model alone (the rest of the normaliser does
nothing to clean ASCII), and every whole-word vocabulary entry is known from the start (greedy
longest-match gives a word in the vocabulary as itself); a new run goes through the whole tokenizer.
Texts the shortcut cannot vouch for (a character of BERT_UNSAFE, or an added token's text such as
[CLS]) are marked for the caller to tokenise whole. A tokenizer with an added token matched after
normalisation (`normalized: true`, what `add_tokens` makes by default) gets no memo at all.
"""
from __future__ import annotations

import json
import re
from typing import Any, Sequence

import numpy as np

# Characters that make the shortcut unsafe: the ASCII control characters, which BERT's normaliser
# deletes (the WordPiece model alone would not), except the whitespace \t \n \r it splits at.
# \x00 also separates the texts of a batch's byte buffer.
BERT_UNSAFE = "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]"
# BertPreTokenizer on ASCII: runs of letters and digits; every other visible character on its own
BERT_ASCII_PIECES = re.compile(rb"[A-Za-z0-9]+|[^A-Za-z0-9\s]")

PACKED_BYTES = 16  # pieces up to this long are packed into two uint64 words
U64 = np.uint64


def _byte_table(members: bytes) -> np.ndarray:
    table = np.zeros(256, bool)  # [256]
    table[np.frombuffer(members, np.uint8)] = True
    return table


# the byte classes the splitter needs (\x00 is the separator between texts)
IS_SPACE = _byte_table(b"\x00\t\n\r ")
IS_PUNCT = _byte_table(bytes(b for b in range(0x21, 0x7F) if not chr(b).isalnum()))
IS_UNSAFE = _byte_table(bytes(b for b in range(1, 128) if re.fullmatch(BERT_UNSAFE, chr(b))))


class PieceTable:
    """Open-addressing (linear probing) hash table from packed pieces (two uint64 words, never both
    zero) to piece numbers, looked up and filled a whole batch at a time."""

    _MUL = (U64(0x9E3779B97F4A7C15), U64(0xC2B2AE3D27D4EB4F))

    def __init__(self, capacity_log2: int = 16) -> None:
        self.bits = capacity_log2
        self.low = np.zeros(1 << capacity_log2, np.uint64)  # [C] first word of the key in each slot
        self.high = np.zeros(1 << capacity_log2, np.uint64)  # [C] second word
        self.values = np.full(1 << capacity_log2, -1, np.int64)  # [C] -1: empty
        self.size = 0

    def _slots(self, keys: np.ndarray) -> np.ndarray:
        """Home slot of each key: the top bits of a multiplicative hash of both words. [P, 2] -> [P]"""
        mixed = (keys[:, 0] * self._MUL[0]) ^ (keys[:, 1] * self._MUL[1])
        return (mixed >> U64(64 - self.bits)).astype(np.int64)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """Number of each key, -1 for keys not in the table. [P, 2] uint64 -> [P] int64"""
        mask = len(self.values) - 1
        slots = self._slots(keys)  # [P]
        out = self.values[slots]  # [P] right wherever the home slot holds the key (most keys)
        low, high = keys[:, 0], keys[:, 1]
        pending = np.flatnonzero((self.low[slots] != low) | (self.high[slots] != high) | (out < 0))
        out[pending] = -1
        slots = slots[pending]
        while pending.size:  # keys displaced by a collision, and keys not in the table
            slots = (slots + 1) & mask
            found = self.values[slots]
            hit = (self.low[slots] == low[pending]) & (self.high[slots] == high[pending]) & (found >= 0)
            out[pending[hit]] = found[hit]
            probe = ~hit & (found >= 0)  # another key's slot: the wanted one may lie further on
            pending, slots = pending[probe], slots[probe]
        return out

    def insert(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Add distinct keys that are not in the table yet. keys [m, 2] uint64, values [m] int64"""
        if 2 * (self.size + len(keys)) > len(self.values):  # keep the load at most 1/2
            self._grow(self.size + len(keys))
        mask = len(self.values) - 1
        pending, slots = np.arange(len(keys)), self._slots(keys)
        while pending.size:
            free = np.flatnonzero(self.values[slots] < 0)  # positions in `pending` whose slot is empty
            claimed, first = np.unique(slots[free], return_index=True)  # one key per empty slot wins it
            winners = pending[free[first]]
            self.low[claimed], self.high[claimed], self.values[claimed] = keys[winners, 0], keys[winners, 1], values[winners]
            placed = np.zeros(len(pending), bool)
            placed[free[first]] = True
            pending, slots = pending[~placed], (slots[~placed] + 1) & mask  # the rest probe on
        self.size += len(keys)

    def _grow(self, needed: int) -> None:
        occupied = self.values >= 0
        keys, values = np.stack([self.low[occupied], self.high[occupied]], axis=1), self.values[occupied]
        bits = self.bits
        while (1 << bits) < 2 * needed:
            bits += 1
        self.__init__(bits)  # type: ignore[misc]
        self.insert(keys, values)


def split_pieces(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts [P], ends [P]) of the pieces of a byte buffer: runs of non-space bytes, cut around
    every ASCII punctuation byte, which is a piece by itself. buf [N] uint8"""
    solid = ~IS_SPACE[buf]  # [N] byte belongs to a piece
    alone = IS_PUNCT[buf]  # [N] byte is a piece by itself
    cut_before = np.ones(len(buf), bool)  # [N] a piece cannot continue from the previous byte
    cut_before[1:] = ~solid[:-1] | alone[:-1]
    cut_before |= alone
    cut_after = np.ones(len(buf), bool)  # [N] a piece cannot continue into the next byte
    cut_after[:-1] = cut_before[1:] | ~solid[1:]
    return np.flatnonzero(solid & cut_before), np.flatnonzero(solid & cut_after) + 1


# LOW_MASK[L] / HIGH_MASK[L]: the bits of the first / second packed word that a piece of L bytes fills
_FILLED = np.minimum(np.arange(PACKED_BYTES + 1)[:, None], np.array([8, 16])) - np.array([0, 8])  # [17, 2] bytes per word
_FILLED = np.maximum(_FILLED, 0)
LOW_MASK, HIGH_MASK = (np.array([(1 << (8 * int(b))) - 1 for b in _FILLED[:, w]], np.uint64) for w in (0, 1))


def pack_pieces(padded: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Pieces of at most PACKED_BYTES bytes as two zero-padded little-endian uint64 words each.
    padded [N + PACKED_BYTES] uint8 (the buffer, then PACKED_BYTES zeros), starts/lengths [P] -> [P, 2]"""
    # every byte offset as the start of an 8-byte word: an unaligned, overlapping view, no copy
    words = np.ndarray(shape=(len(padded) - 7,), dtype="<u8", buffer=padded, offset=0, strides=(1,))  # [N + 9]
    packed = np.empty((len(starts), 2), np.uint64)  # [P, 2]
    packed[:, 0] = words[starts] & LOW_MASK[lengths]
    packed[:, 1] = words[starts + 8] & HIGH_MASK[lengths]
    return packed


class ChunkMemo:
    """The memo: piece numbers (PieceTable for short pieces, a dict for long ones) and each
    numbered piece's ids (piece p's ids are _ids[_offsets[p]:_offsets[p + 1]])."""

    max_pieces = 1_000_000  # distinct pieces remembered (then it starts over)

    def __init__(self, backend: Any, added: list[str], lowercase: bool, wordpiece: dict[str, Any] | None = None) -> None:
        self.backend = backend
        self.lowercase = lowercase
        self.wordpiece = wordpiece  # the WordPiece model's settings, when that is the model
        # an added token in any case (a superset of what the tokenizer matches, so at worst a text is
        # tokenised whole for nothing); its first characters are a cheap filter before the search
        added = [a for a in added if a]
        self.added = re.compile("|".join(re.escape(a) for a in added), re.IGNORECASE) if added else None
        self.added_first = sorted({c for a in added for c in (a[0].lower(), a[0].upper())})
        ascii_first = all(c.isascii() for c in self.added_first)
        self.added_first_bytes = _byte_table("".join(self.added_first).encode("ascii")) if ascii_first else None
        self._reset()

    def _reset(self) -> None:
        self._table = PieceTable()
        self._long: dict[bytes, int] = {}  # pieces longer than PACKED_BYTES -> number
        self._pieces: list[bytes] = []  # each numbered piece (lowercased if the normaliser lowercases)
        self._offsets = np.zeros(1, np.int64)  # [P + 1]
        self._ids = np.zeros(0, np.int64)
        if self.wordpiece is not None:
            self._prefill()

    def _prefill(self) -> None:
        """Whole-word vocabulary entries that are one ASCII pre-token map to their own id."""
        prefix, longest = self.wordpiece.get("continuing_subword_prefix") or "##", self.wordpiece.get("max_input_chars_per_word", 100)
        words = sorted(
            (i, token.encode("ascii"))  # sorted by id: a fixed order, whatever the vocabulary dict's
            for token, i in self.backend.get_vocab(with_added_tokens=False).items()
            if token.isascii() and not token.startswith(prefix) and len(token) <= longest
            and BERT_ASCII_PIECES.fullmatch(token.encode("ascii")) and (not self.lowercase or token == token.lower())
        )
        self._add([word for _, word in words], [[i] for i, _ in words])

    @classmethod
    def for_backend(cls, backend: Any) -> "ChunkMemo | None":
        spec = json.loads(backend.to_str())
        normalizer, pre, model = spec.get("normalizer") or {}, spec.get("pre_tokenizer") or {}, spec.get("model") or {}
        if normalizer.get("type") != "BertNormalizer" or pre.get("type") != "BertPreTokenizer":
            return None
        if any(t.get("normalized") for t in spec.get("added_tokens", [])):
            return None  # matched in the normalised text (accents stripped...), which the shortcut never builds
        added = [t["content"] for t in spec.get("added_tokens", [])]
        return cls(backend, added, bool(normalizer.get("lowercase")), model if model.get("type") == "WordPiece" else None)

    def _whole_texts(self, texts: Sequence[str], buf: np.ndarray, text_ends: np.ndarray) -> np.ndarray:
        """[n] bool: texts the shortcut cannot vouch for (a BERT_UNSAFE character, or an added
        token's text), found on the byte buffer; only texts holding an added token's first character
        are searched for added tokens."""
        whole = np.zeros(len(texts), bool)
        whole[np.searchsorted(text_ends, np.flatnonzero(IS_UNSAFE[buf]))] = True
        if self.added is None:
            return whole
        if self.added_first_bytes is not None:
            candidates = np.unique(np.searchsorted(text_ends, np.flatnonzero(self.added_first_bytes[buf]))).tolist()
        else:
            candidates = [i for i, t in enumerate(texts) if any(c in t for c in self.added_first)]
        for i in candidates:
            whole[i] = whole[i] or self.added.search(texts[i]) is not None
        return whole

    # -- numbering ----------------------------------------------------------------------------------

    def _add(self, pieces: list[bytes], ids: list[list[int]]) -> np.ndarray:
        """Number new, distinct pieces with their ids; returns their numbers. [m]"""
        numbers = np.arange(len(self._pieces), len(self._pieces) + len(pieces), dtype=np.int64)  # [m]
        self._pieces.extend(pieces)
        sizes = np.fromiter(map(len, ids), np.int64, len(ids))
        flat = np.fromiter((i for piece_ids in ids for i in piece_ids), np.int64, int(sizes.sum()))
        self._ids = np.concatenate([self._ids, flat])
        self._offsets = np.concatenate([self._offsets, self._offsets[-1] + np.cumsum(sizes)])
        short = np.fromiter(map(len, pieces), np.int64, len(pieces)) <= PACKED_BYTES
        for piece, number, is_short in zip(pieces, numbers, short):
            if not is_short:
                self._long[piece] = int(number)
        if short.any():
            padded = np.frombuffer(b"\x00".join(p for p, s in zip(pieces, short) if s) + bytes(PACKED_BYTES), np.uint8)
            lengths = np.fromiter((len(p) for p, s in zip(pieces, short) if s), np.int64)
            starts = np.cumsum(lengths + 1) - lengths - 1
            self._table.insert(pack_pieces(padded, starts, lengths), numbers[short])
        return numbers

    def _tokenize_pieces(self, pieces: list[bytes]) -> list[list[int]]:
        """Ids of new pieces: an ASCII one (a pre-token) through the model alone, which is twice as
        fast as a full encode; one holding other characters through everything."""
        out: list[list[int]] = [[] for _ in pieces]
        model = self.backend.model
        runs = []
        for i, piece in enumerate(pieces):
            if piece.isascii():
                out[i] = [token.id for token in model.tokenize(piece.decode("ascii"))]
            else:
                runs.append(i)
        for i, encoding in zip(runs, self.backend.encode_batch([pieces[i].decode("utf-8") for i in runs], add_special_tokens=False)):
            out[i] = encoding.ids
        return out

    def _number_new(self, data: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Numbers of pieces not known yet (repeats included), numbering each distinct one. [m]"""
        first: dict[bytes, int] = {}  # distinct new piece -> its place in `fresh`
        fresh: list[bytes] = []
        places = np.empty(len(starts), np.int64)
        for k, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
            piece = data[s:e]
            place = first.get(piece)
            if place is None:
                place = first[piece] = len(fresh)
                fresh.append(piece)
            places[k] = place
        return self._add(fresh, self._tokenize_pieces(fresh))[places]

    def _numbers(self, data: bytes, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Piece number of every piece of the buffer. [P]"""
        lengths = ends - starts  # [P]
        numbers = np.full(len(starts), -1, np.int64)  # [P]
        short = lengths <= PACKED_BYTES
        padded = np.concatenate([buf, np.zeros(PACKED_BYTES, np.uint8)])
        numbers[short] = self._table.lookup(pack_pieces(padded, starts[short], lengths[short]))
        for k in np.flatnonzero(~short).tolist():
            numbers[k] = self._long.get(data[starts[k] : ends[k]], -1)
        new = np.flatnonzero(numbers < 0)
        if new.size:
            numbers[new] = self._number_new(data, starts[new], ends[new])
        return numbers

    def tokenize(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flat ids [W] int64, lengths [n] int64, whole [n] bool): the ids of every text the shortcut
        vouches for, back to back; a text marked `whole` has no ids here (length 0): the caller
        tokenises it whole."""
        n = len(texts)
        if len(self._pieces) > self.max_pieces:
            self._reset()
        joined = "\x00".join(texts)
        whole = np.zeros(n, bool)
        if joined.count("\x00") != max(n - 1, 0):  # a text holds the separator: leave it out of the buffer
            whole = np.fromiter(("\x00" in t for t in texts), bool, n)
            joined = "\x00".join("" if w else t for t, w in zip(texts, whole))
        data = joined.encode("utf-8")
        if self.lowercase:
            data = data.lower()  # ASCII letters only, which is what BertNormalizer does to them
        buf = np.frombuffer(data, np.uint8)  # [N]
        text_ends = np.append(np.flatnonzero(buf == 0), len(buf))[:n]  # [n] end of each text's bytes
        whole |= self._whole_texts(texts, buf, text_ends)
        starts, ends = split_pieces(buf)  # [P] x2
        text_of_piece = np.searchsorted(text_ends, starts)  # [P]
        if whole.any():
            keep = ~whole[text_of_piece]
            starts, ends, text_of_piece = starts[keep], ends[keep], text_of_piece[keep]
        numbers = self._numbers(data, buf, starts, ends)  # [P]
        # gather every piece's ids back to back
        piece_starts, sizes = self._offsets[numbers], np.diff(self._offsets)[numbers]  # [P] x2
        W = int(sizes.sum())
        flat = self._ids[np.repeat(piece_starts - (np.cumsum(sizes) - sizes), sizes) + np.arange(W)]  # [W]
        lengths = np.bincount(text_of_piece, weights=sizes, minlength=n).astype(np.int64)  # [n]
        return flat, lengths, whole

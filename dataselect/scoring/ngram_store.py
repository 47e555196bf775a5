"""DSIR's score stage: a shard's documents -> their hashed n-gram bucket lists, run over a source by the
score-phase loop on any executor. The store is keyed by input, rendering and featuriser, so fitting,
weighting, the KL metric and a later run with another target never featurise the pool again. Each shard's bucket
lists are one .npy (uint16 when num_buckets <= 65,536, so about 4 bytes per word): [unigram block |
bigram block], with each document's length and n-gram count in the shard's metadata.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Iterator

from dataselect.scoring.ngram import NgramFeatures
from dataselect.scoring.stage import Resources, ShardOutput

if TYPE_CHECKING:
    from dataselect.io.samples import Sample
    from dataselect.io.shards import ShardStore

FEATURE_FORMAT = 1  # bump when the stored bucket lists change meaning


def chunk_sample(sample: Sample, chunk_words: int | None) -> list[tuple[Sample, int]]:
    """The sample's chunks (`word_chunks`): a document no longer than `chunk_words` stays whole
    (chunk 0, same id); chunk c of a longer one gets id#c."""
    from dataselect.io.render import word_chunks

    chunks = word_chunks(sample.text, chunk_words) if chunk_words else [sample.text]
    if len(chunks) == 1:
        return [(sample, 0)]
    return [(replace(sample, id=f"{sample.id}#{c}", text=text), c) for c, text in enumerate(chunks)]


def read_features(store: ShardStore, index: int) -> NgramFeatures:
    """One shard's hashed n-grams and lengths from an n-gram store."""
    meta = store.read_meta(index, ["n_ngrams", "length"])
    flat = store.read_array(index, "ngrams")
    return NgramFeatures.from_stored(flat, meta.column("length").to_numpy(), meta.column("n_ngrams").to_numpy())


def iter_features(store: ShardStore) -> Iterator[NgramFeatures]:
    """Every shard's hashed n-grams, in store order."""
    for index in range(store.num_shards):
        yield read_features(store, index)


class NgramStage:
    """DSIR's score stage: a shard's documents (or their word chunks) -> hashed n-gram bucket lists.

    Stored per shard: `ngrams` (the flat [unigram block | bigram block]) and the columns length,
    n_ngrams (+ chunk with chunk_words, file with `files`)."""

    kind = "ngrams"
    resources = Resources(gpu=False)

    def __init__(self, featurizer: Any, chunk_words: int | None = None, files: bool = False) -> None:
        self.featurizer = featurizer
        self.chunk_words = chunk_words
        self.files = files
        self.token_unit = "words" if featurizer.kind == "reference" else "tokens"

    def identity(self) -> dict[str, Any]:
        return {"format": FEATURE_FORMAT, "featurizer": self.featurizer.identity(), "chunk_words": self.chunk_words, "files": self.files}

    def setup(self, device: str | None) -> None:
        pass  # featurisers hold no weights; their memo caches fill per process

    def score(self, samples: list[Sample]) -> ShardOutput:
        import pyarrow as pa

        pieces = [piece for s in samples for piece in chunk_sample(s, self.chunk_words)] if self.chunk_words else [(s, 0) for s in samples]
        rows = [p[0] for p in pieces]
        features = self.featurizer.featurize([r.text for r in rows])
        columns: dict[str, Any] = {"length": pa.array(features.lengths, pa.int64()), "n_ngrams": pa.array(features.n_ngrams, pa.int64())}
        if self.files:
            columns["file"] = pa.array([r.file for r in rows], pa.string())
        if self.chunk_words:
            columns["chunk"] = pa.array([p[1] for p in pieces], pa.int64())
        return ShardOutput(columns=columns, arrays={"ngrams": features.stored()}, counters={"tokens": int(features.lengths.sum())}, rows=rows)

    def close(self) -> None:
        pass

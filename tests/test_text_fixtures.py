"""The synthetic text corpus of fixtures/text.py: what its docstring promises."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures import text

GRADER_SEED = 2024  # the corpus of graders/test_lstm.py (CORPUS_SEED in graders/_lstm.py)


@pytest.fixture(scope="module")
def grader_data() -> dict[str, np.ndarray]:
    return text.make_dataset(seed=GRADER_SEED)


def test_vocabulary_is_the_space_the_full_stop_and_the_letters_of_the_words():
    assert text.VOCABULARY[:2] == " ."
    assert len(text.VOCABULARY) == 25 == len(set(text.VOCABULARY))
    words = text.DETERMINERS + text.ADJECTIVES + text.NOUNS + text.VERBS + text.PREPOSITIONS
    assert set(text.VOCABULARY[2:]) == set("".join(words))


def test_corpus_is_whole_sentences_of_the_grammar():
    corpus = text.make_corpus(2_000, seed=3)
    assert len(corpus) >= 2_000 and corpus.endswith(".")
    for sentence in corpus[:-1].split(". "):
        words = sentence.split(" ")
        assert words[0] in text.DETERMINERS and words[-1] in text.NOUNS
        assert any(w in text.VERBS for w in words)
        assert 5 <= len(words) <= 11


def test_corpus_is_deterministic_and_depends_on_the_seed():
    assert text.make_corpus(500, seed=1) == text.make_corpus(500, seed=1)
    assert text.make_corpus(500, seed=1) != text.make_corpus(500, seed=2)


def test_encode_and_decode_are_inverse():
    corpus = text.make_corpus(300, seed=4)
    ids = text.encode(corpus)
    assert ids.dtype == np.int64 and ids.max() < len(text.VOCABULARY)
    assert text.decode(ids) == corpus
    with pytest.raises(ValueError, match="'Z' is not in the corpus vocabulary"):
        text.encode("Zebra")


def test_dataset_splits_have_the_documented_sizes_and_differ(grader_data):
    assert 60_000 <= len(grader_data["train"]) < 60_100 and 6_000 <= len(grader_data["val"]) < 6_100
    assert text.decode(grader_data["train"][:200]) != text.decode(grader_data["val"][:200])


def test_ngram_cross_entropies_are_the_documented_ones(grader_data):
    # The docstring's numbers: memory beyond the previous character is worth more than a nat.
    entropies = {
        order: text.conditional_entropy(grader_data["train"], grader_data["val"], order) for order in (1, 2, 3, 5)
    }
    assert entropies == pytest.approx({1: 2.806, 2: 1.786, 3: 0.813, 5: 0.460}, abs=2e-3)


def test_conditional_entropy_of_a_uniform_stream_is_log_of_the_vocabulary():
    rng = np.random.default_rng(0)
    stream = rng.integers(0, len(text.VOCABULARY), size=200_000)
    assert text.conditional_entropy(stream[:150_000], stream[150_000:], 1) == pytest.approx(np.log(25), abs=0.01)

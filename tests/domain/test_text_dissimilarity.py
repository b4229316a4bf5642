import math
import random

import pytest

from compere.domain.text import (
    TextEntity,
    cosine,
    most_dissimilar_pair,
    similarity_matrix,
    tokenize,
)


def test_tokenize_lowercases_and_splits_on_punctuation():
    assert tokenize("Red-Apple, GREEN pear_2!") == ["red", "apple", "green", "pear", "2"]


def test_hand_checked_tfidf_cosine():
    # docs: "a b", "a c"; n = 2; df(a) = 2 -> idf 1; df(b) = df(c) = 1 -> idf ln(3/2) + 1
    idf = math.log(1.5) + 1
    expected = 1 / (1 + idf * idf)  # (1*1) / (|(1, idf)| * |(1, idf)|)
    sim = similarity_matrix(["a b", "a c"])
    assert sim[0, 1] == pytest.approx(expected)
    assert sim[0, 0] == pytest.approx(1.0)


def test_identical_and_disjoint_texts():
    assert cosine("red apple", "Red APPLE") == pytest.approx(1.0)
    assert cosine("red apple", "blue car") == 0.0
    assert cosine("", "blue car") == 0.0


def test_most_dissimilar_pair_on_tiny_example():
    entities = [
        TextEntity(1, "Red apple", "a sweet red fruit"),
        TextEntity(2, "Green apple", "a sour green fruit"),
        TextEntity(3, "Steel hammer", "tool for nails"),
        TextEntity(4, "Red cherry", "a sweet red fruit"),
    ]
    pair = most_dissimilar_pair(entities, random.Random(0))
    # the hammer shares no word with any fruit; the tie is broken by the smallest ids
    assert (pair.entity1_id, pair.entity2_id) == (1, 3)
    assert pair.similarity == 0.0


def test_order_of_input_does_not_matter():
    entities = [TextEntity(k, f"item {k % 3}", "word " * (k % 4)) for k in range(10)]
    shuffled = entities[:]
    random.Random(9).shuffle(shuffled)
    assert most_dissimilar_pair(entities, random.Random(1)) == most_dissimilar_pair(
        shuffled, random.Random(1)
    )


def test_sampling_is_deterministic_under_a_seed():
    rng = random.Random(3)
    words = ["alpha", "beta", "gamma", "delta", "omega", "sigma"]
    entities = [
        TextEntity(k, " ".join(rng.sample(words, 2)), " ".join(rng.sample(words, 3))) for k in range(500)
    ]
    a = most_dissimilar_pair(entities, random.Random(42), sample_size=50)
    b = most_dissimilar_pair(entities, random.Random(42), sample_size=50)
    assert a == b


def test_needs_two_entities():
    with pytest.raises(ValueError):
        most_dissimilar_pair([TextEntity(1, "x")], random.Random(0))

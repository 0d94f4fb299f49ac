import numpy as np

from msa_core.coalitions import from_indices, from_ranks, full_and_empty


def test_from_ranks_builds_prefixes_of_each_order():
    ranks = np.array([[2, 0, 1]])  # order: unit 1, unit 2, unit 0
    rows = from_ranks(ranks, np.arange(1, 3))
    assert rows.tolist() == [[False, True, False], [False, True, True]]


def test_from_indices_reads_bits_little_endian():
    assert from_indices(np.array([0, 5]), 3).tolist() == [
        [False, False, False],
        [True, False, True],
    ]


def test_full_and_empty():
    assert full_and_empty(2).tolist() == [[True, True], [False, False]]

from compere.domain.leaderboard import rank_with_ties


def test_overlapping_intervals_share_a_rank():
    board = rank_with_ties([(1, 3.0, 0.2), (2, 2.8, 0.2), (3, 0.0, 0.2), (4, -3.0, 0.2)])
    assert [(e.id, e.rank, e.tied) for e in board] == [
        (1, 1, True),
        (2, 1, True),
        (3, 3, False),
        (4, 4, False),
    ]


def test_rank_counts_entities_whose_interval_lies_above():
    # 1 and 2 overlap, 3 overlaps 2 but not 1
    board = rank_with_ties([(1, 2.0, 0.25), (2, 1.2, 0.25), (3, 0.4, 0.25)])
    assert [e.rank for e in board] == [1, 1, 2]
    assert board[0].lower < board[0].mu < board[0].upper


def test_uncertain_entity_never_ranks_above_a_confident_one_listed_higher():
    board = rank_with_ties([(1, 5.0, 0.1), (2, 4.0, 0.1), (3, 3.9, 3.0)])
    assert [e.id for e in board] == [1, 2, 3]
    assert [e.rank for e in board] == [1, 2, 2]


def test_equal_scores_ordered_by_id_and_empty_board():
    board = rank_with_ties([(9, 1.0, 0.1), (4, 1.0, 0.1)])
    assert [e.id for e in board] == [4, 9] and all(e.tied for e in board)
    assert rank_with_ties([]) == []

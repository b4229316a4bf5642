-- pgbench script: one vote, the same statements POST /comparisons/ sends in one
-- transaction (compere/storage/comparisons.py, record_comparison): lock both entity rows in
-- id order, update rating, Bayesian strength (mu, sigma) and counters of both, insert the
-- comparison with RETURNING.
-- Two distinct random entities out of 1..n; run with -D n=<number of entities>.
\set a random(1, :n)
\set b random(1, :n - 1)
\set b case when :b >= :a then :b + 1 else :b end
\set lo least(:a, :b)
\set hi greatest(:a, :b)
\set winner case when random(0, 1) = 0 then :a else :b end
\set loser :a + :b - :winner
BEGIN;
SELECT id, rating, mu, sigma FROM entities WHERE id IN (:lo, :hi) AND deleted_at IS NULL ORDER BY id FOR UPDATE;
UPDATE entities SET rating = rating + 16, mu = mu + 0.1, sigma = sigma * 0.99, comparisons = comparisons + 1, wins = wins + 1, losses = losses + 0, ties = ties + 0 WHERE id = :winner;
UPDATE entities SET rating = rating - 16, mu = mu - 0.1, sigma = sigma * 0.99, comparisons = comparisons + 1, wins = wins + 0, losses = losses + 1, ties = ties + 0 WHERE id = :loser;
INSERT INTO comparisons (entity1_id, entity2_id, selected_entity_id, created_at, strategy, selection_probability, pair_token_id) VALUES (:a, :b, :winner, now(), NULL, NULL, NULL) RETURNING id, entity1_id, entity2_id, selected_entity_id, created_at, strategy, selection_probability;
END;

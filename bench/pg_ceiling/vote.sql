-- pgbench script: one vote, the transaction POST /comparisons/ performs.
-- Two distinct random entities; rows locked in id order (no deadlocks), both updated,
-- the comparison inserted. Run with -D n=<number of entities>.
\set a random(1, :n)
\set b random(1, :n - 1)
\set b case when :b >= :a then :b + 1 else :b end
\set lo least(:a, :b)
\set hi greatest(:a, :b)
\set winner case when random(0, 1) = 0 then :a else :b end
BEGIN;
SELECT id, rating, comparisons, wins FROM entities WHERE id IN (:lo, :hi) ORDER BY id FOR UPDATE;
UPDATE entities SET rating = rating + 16, comparisons = comparisons + 1, wins = wins + 1 WHERE id = :lo;
UPDATE entities SET rating = rating - 16, comparisons = comparisons + 1 WHERE id = :hi;
INSERT INTO comparisons (entity1_id, entity2_id, selected_entity_id) VALUES (:a, :b, :winner);
END;

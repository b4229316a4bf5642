-- SQLite flavour of sql/postgresql/0014_entity_attributes.sql.
-- Named numeric attributes of an entity (answer length, markdown headers, ...): the
-- covariates a fitted board can control for (`/ratings?control=`).
--
-- A JSON object as text, like image_urls: it is read and written whole with its entity
-- and only ever interpreted in Python (the board reads every live entity's attributes
-- and fits on them), so a side table would add a join and many-row writes to every
-- create and import and buy no query. The API validates names and values. NULL: none
-- (every entity before this file, and any without attributes).
ALTER TABLE entities ADD COLUMN attributes TEXT;

-- A board's tiers (issue 18): an ordered list, best first, as common/tiers.py encodes it
-- ([{"id", "name", "kind", "value"}, ...], kind null for the one default tier, which comes
-- last). leaderboard_service validates a definition before it stores it; an empty list means
-- the board has no tiers.
ALTER TABLE boards
    ADD COLUMN tiers jsonb NOT NULL DEFAULT '[]'
        CHECK (jsonb_typeof(tiers) = 'array' AND jsonb_array_length(tiers) <= 16);

-- The tier of each entry of a closed period, frozen with its standings (NULL: the board had no
-- tiers when the period closed). The name is kept as it was, so renaming a tier later does not
-- rewrite the archive.
ALTER TABLE period_standings
    ADD COLUMN tier_id   text,
    ADD COLUMN tier_name text,
    ADD CONSTRAINT period_standings_tier CHECK ((tier_id IS NULL) = (tier_name IS NULL));

-- More keys that cost more on the hot path than they protect (see 20261124000004 for the
-- reasoning). A foreign key check is a trigger that runs a locking query per inserted row:
-- every callback paid for two (its record and its events, each against the generation the
-- same statement updates), every delivery attempt for one (against the delivery the same
-- statement settles). Generations and deliveries are never deleted.
ALTER TABLE fal_callbacks DROP CONSTRAINT fal_callbacks_generation_id_fkey;
ALTER TABLE events DROP CONSTRAINT events_generation_id_fkey;
ALTER TABLE delivery_attempts DROP CONSTRAINT delivery_attempts_delivery_id_fkey;

-- It served only the foreign key dropped in 20261124000004; no query reads deliveries by
-- event. Every delivery's insert, lease and settle wrote an entry to it.
DROP INDEX deliveries_event;

-- An attempt's key is (delivery_id, attempt); the surrogate id cost a sequence step and an
-- index entry per attempt, and nothing reads it. (Rebuilds the key's index: on a large table,
-- run this migration at a quiet moment.)
ALTER TABLE delivery_attempts
    DROP CONSTRAINT delivery_attempts_pkey,
    DROP COLUMN id,
    DROP CONSTRAINT delivery_attempts_delivery_id_attempt_key,
    ADD PRIMARY KEY (delivery_id, attempt);

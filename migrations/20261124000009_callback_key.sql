-- fal's callbacks are keyed by fal's request id, unique already. The surrogate id (with its
-- sequence) and the index by generation were written on every callback and read by nothing:
-- a callback is found by its request id (duplicates, the seen check).
DROP INDEX fal_callbacks_generation;
ALTER TABLE fal_callbacks DROP COLUMN id;
ALTER TABLE fal_callbacks
    DROP CONSTRAINT fal_callbacks_fal_request_id_key,
    ADD PRIMARY KEY (fal_request_id);

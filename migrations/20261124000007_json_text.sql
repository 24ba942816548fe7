-- Event bodies and fal's callbacks are stored as the JSON text they are: `json` keeps the exact
-- bytes (validated, not decomposed). Nothing queries inside them; they are written once and read
-- back whole, as text — what `jsonb` spent parsing on the way in and printing on the way out
-- (on every delivery and every SSE frame) bought nothing. A callback is now recorded verbatim.
ALTER TABLE events ALTER COLUMN payload TYPE json USING payload::json;
ALTER TABLE fal_callbacks ALTER COLUMN body TYPE json USING body::json;

-- Secrets every instance shares, such as the key of the callback URL tokens. `value` is sealed
-- with FLUXGATE_ENCRYPTION_KEY when one is set; `created_at` of the callback-token key is the
-- moment callback URLs started carrying tokens (older URLs are honoured for a grace period).
CREATE TABLE server_secrets (
    name text PRIMARY KEY,
    value text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- A generation cancelled while fal had it keeps its budget reservation until fal's final word
-- (its result, its error, or fal no longer knowing it): set from the cancel until then.
ALTER TABLE generations ADD COLUMN reservation_held_since timestamptz;
CREATE INDEX generations_reservation_held ON generations (reservation_held_since)
    WHERE reservation_held_since IS NOT NULL;

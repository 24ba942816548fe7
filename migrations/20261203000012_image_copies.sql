-- The copier stage's queue: a verified fal result whose images are still to be copied into the
-- store. The webhook writes a row and answers at once; a copier (any instance) leases it,
-- copies, applies the result (the callback is recorded, the generation finishes and is
-- announced), then deletes the row. One row per generation: a duplicate webhook changes
-- nothing. `body` is fal's callback as received, recorded verbatim once applied.
CREATE TABLE image_copies (
    generation_id  uuid PRIMARY KEY,
    fal_request_id text NOT NULL,
    source         text NOT NULL,
    body           text NOT NULL,
    received_at    timestamptz NOT NULL,
    attempts       int NOT NULL DEFAULT 0,
    max_images     int NOT NULL,
    due_at         timestamptz NOT NULL DEFAULT now(),
    lease_until    timestamptz,
    give_up_at     timestamptz NOT NULL,
    last_error     text
);
CREATE INDEX image_copies_due ON image_copies (due_at);

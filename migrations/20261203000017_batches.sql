-- Batches: up to 100 generation or edit requests accepted together (`POST /v1/batches`). Each
-- member is an ordinary generation that points here; the batch is `running` until every member
-- is terminal, then `completed` (whatever each member's outcome) and announced once by a
-- `batch.completed` event.
CREATE TABLE batches (
    id                     uuid PRIMARY KEY,
    tenant_id              uuid NOT NULL REFERENCES tenants (id),
    status                 text NOT NULL DEFAULT 'running'
                           CHECK (status IN ('running', 'completed')),
    priority               text NOT NULL CHECK (priority IN ('normal', 'low')),
    webhook_url            text,
    metadata               jsonb,
    size                   integer NOT NULL CHECK (size BETWEEN 1 AND 100),
    estimated_cost_micros  bigint NOT NULL CHECK (estimated_cost_micros >= 0),
    cancel_requested_at    timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    completed_at           timestamptz
);
CREATE INDEX batches_tenant_recent ON batches (tenant_id, id DESC);

-- fal's queue priority, per generation (`X-Fal-Queue-Priority`); the submitter claims normal
-- work before low. The CHECK is NOT VALID so adding it does not scan a large table: every row
-- already holds the default.
ALTER TABLE generations
    ADD COLUMN batch_id uuid REFERENCES batches (id),
    ADD COLUMN priority text NOT NULL DEFAULT 'normal';
ALTER TABLE generations
    ADD CONSTRAINT generations_priority_check CHECK (priority IN ('normal', 'low')) NOT VALID;
CREATE INDEX generations_batch ON generations (batch_id) WHERE batch_id IS NOT NULL;
-- The outbox in claim order: normal before low, then by due time.
DROP INDEX generations_outbox;
CREATE INDEX generations_outbox ON generations ((priority = 'low'), next_attempt_at)
    WHERE status = 'accepted';
-- The closer looks for batches to close only when a member reaches a terminal state: every
-- instance is told (on commit; several members finishing in one transaction send one notice),
-- and one of them closes the batch. Rows outside batches pay only the WHEN test.
CREATE INDEX batches_running ON batches (id) WHERE status = 'running';
CREATE FUNCTION fluxgate_batch_member_finished() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('fluxgate_batches', NEW.batch_id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER generations_batch_member_finished
    AFTER INSERT OR UPDATE OF status ON generations
    FOR EACH ROW
    WHEN (NEW.batch_id IS NOT NULL AND NEW.status IN ('completed', 'failed', 'cancelled'))
    EXECUTE FUNCTION fluxgate_batch_member_finished();

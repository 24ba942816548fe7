-- Operations: alert state shared by every instance, and indexes for the windowed queries the
-- monitor and the metrics refresher run every few seconds.

-- One row per alert. A transition is an `UPDATE … WHERE firing <> $new` under the row lock, in
-- the same transaction as the `alert.*` events it announces: exactly one instance wins it.
CREATE TABLE alert_state (
    name          text PRIMARY KEY,
    firing        boolean NOT NULL DEFAULT false,
    changed_at    timestamptz,
    evaluated_at  timestamptz,
    ratio         double precision,
    failures      bigint,
    total         bigint
);
INSERT INTO alert_state (name) VALUES ('fal_error_rate'), ('delivery_failure_rate');

-- fal's error ratio and spend read generations by the time they finished.
CREATE INDEX generations_finished ON generations (finished_at) WHERE finished_at IS NOT NULL;
-- The delivery failure ratio reads the attempts of the last window.
CREATE INDEX delivery_attempts_started ON delivery_attempts (started_at);

-- The core of fluxgate. Forward-only: never edit once applied; add a new file instead.

CREATE TABLE tenants (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    -- Signs the deliveries to a generation's own `webhook_url` (Standard Webhooks `whsec_…`).
    webhook_secret  text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Only the SHA-256 of a key is kept; `lookup` is the non-secret part used to find the row.
CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    lookup       text NOT NULL UNIQUE,
    secret_hash  bytea NOT NULL CHECK (length(secret_hash) = 32),
    label        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    revoked_at   timestamptz
);
CREATE INDEX api_keys_tenant ON api_keys (tenant_id);

-- A generation row is also the submission outbox: `accepted` rows are the work queue.
CREATE TABLE generations (
    id                     uuid PRIMARY KEY,
    tenant_id              uuid NOT NULL REFERENCES tenants (id),
    status                 text NOT NULL DEFAULT 'accepted'
                           CHECK (status IN ('accepted', 'queued', 'completed', 'failed', 'cancelled')),
    model                  text NOT NULL,
    input                  jsonb NOT NULL,
    webhook_url            text,
    metadata               jsonb,
    end_user               text,
    estimated_cost_micros  bigint NOT NULL CHECK (estimated_cost_micros >= 0),
    cost_micros            bigint CHECK (cost_micros >= 0),
    fal_request_id         text,
    status_url             text,
    response_url           text,
    cancel_url             text,
    seed                   bigint,
    result                 jsonb,
    error                  jsonb,
    submit_attempts        integer NOT NULL DEFAULT 0,
    transient_failures     integer NOT NULL DEFAULT 0,
    cancel_requested_at    timestamptz,
    last_checked_at        timestamptz,
    next_attempt_at        timestamptz NOT NULL DEFAULT now(),
    lease_until            timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now(),
    submitted_at           timestamptz,
    finished_at            timestamptz
);
CREATE UNIQUE INDEX generations_fal_request ON generations (fal_request_id) WHERE fal_request_id IS NOT NULL;
CREATE INDEX generations_tenant_recent ON generations (tenant_id, id DESC);
CREATE INDEX generations_outbox ON generations (next_attempt_at) WHERE status = 'accepted';
CREATE INDEX generations_awaiting_callback ON generations (submitted_at) WHERE status = 'queued';

-- Every verified fal callback, unique on fal's request id: a duplicate changes nothing.
-- `announced` is false for a callback that did not change the generation (e.g. a second fal
-- run after a crash between fal's accept and our write): recorded, never fanned out.
CREATE TABLE fal_callbacks (
    id              bigserial PRIMARY KEY,
    generation_id   uuid NOT NULL REFERENCES generations (id),
    fal_request_id  text NOT NULL UNIQUE,
    source          text NOT NULL CHECK (source IN ('webhook', 'reconciler')),
    fal_status      text NOT NULL,
    body            jsonb NOT NULL,
    announced       boolean NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fal_callbacks_generation ON fal_callbacks (generation_id);

-- The event log. `seq` orders events for SSE ids and Last-Event-ID resumption; `payload` is
-- exactly what subscribers receive.
CREATE TABLE events (
    id             uuid PRIMARY KEY,
    seq            bigserial NOT NULL UNIQUE,
    tenant_id      uuid NOT NULL REFERENCES tenants (id),
    type           text NOT NULL,
    generation_id  uuid REFERENCES generations (id),
    payload        jsonb NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_tenant_seq ON events (tenant_id, seq DESC);
CREATE INDEX events_generation ON events (generation_id, seq) WHERE generation_id IS NOT NULL;

-- REST Hooks subscriptions. Secrets must be usable for HMAC, so they are kept, not hashed.
CREATE TABLE subscriptions (
    id                          uuid PRIMARY KEY,
    tenant_id                   uuid NOT NULL REFERENCES tenants (id),
    target_url                  text NOT NULL,
    event_types                 text[] NOT NULL,
    filter                      jsonb,
    description                 text,
    headers                     jsonb NOT NULL DEFAULT '{}'::jsonb,
    secret                      text NOT NULL,
    previous_secret             text,
    previous_secret_expires_at  timestamptz,
    status                      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    disabled_reason             text,
    failing_since               timestamptz,
    max_in_flight               integer NOT NULL DEFAULT 8 CHECK (max_in_flight > 0),
    rate_limit_per_sec          integer CHECK (rate_limit_per_sec > 0),
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now(),
    deleted_at                  timestamptz
);
CREATE INDEX subscriptions_tenant_active ON subscriptions (tenant_id) WHERE status = 'active' AND deleted_at IS NULL;

-- One row per (event, target). `subscription_id` is NULL for a generation's own webhook_url.
-- `tenant_id` is denormalised for tenant-scoped reads; it follows from the event, so it carries no
-- foreign key of its own (one check fewer on the fan-out hot path).
CREATE TABLE deliveries (
    id               uuid PRIMARY KEY,
    tenant_id        uuid NOT NULL,
    event_id         uuid NOT NULL REFERENCES events (id),
    subscription_id  uuid REFERENCES subscriptions (id),
    target_url       text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'succeeded', 'failed', 'exhausted', 'cancelled')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_until      timestamptz,
    last_status_code integer,
    last_error_class text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);

CREATE INDEX deliveries_subscription ON deliveries (subscription_id, created_at DESC);
CREATE INDEX deliveries_event ON deliveries (event_id);

-- Every attempt is an immutable row: the audit log subscribers and operators read.
CREATE TABLE delivery_attempts (
    id                bigserial PRIMARY KEY,
    delivery_id       uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt           integer NOT NULL,
    started_at        timestamptz NOT NULL,
    duration_ms       integer NOT NULL,
    status_code       integer,
    error_class       text CHECK (error_class IN ('timeout', 'connect', 'dns', 'tls', 'http_status', 'ssrf_blocked', 'invalid_target')),
    response_excerpt  text,
    UNIQUE (delivery_id, attempt)
);

-- Deliveries: two lanes so first attempts are never starved by a backlog of retries.
CREATE INDEX deliveries_first_lane ON deliveries (next_attempt_at) WHERE status = 'pending' AND attempts = 0;
CREATE INDEX deliveries_retry_lane ON deliveries (next_attempt_at) WHERE status = 'pending' AND attempts > 0;
CREATE INDEX deliveries_inflight ON deliveries (subscription_id) WHERE status = 'pending' AND lease_until IS NOT NULL;

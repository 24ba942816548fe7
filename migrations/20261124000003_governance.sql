-- Cost governance: budgets, rate limits, idempotency, the seed cache.

-- Limits a tenant lives under (NULL = unlimited). End-user defaults apply to every end_user of
-- the tenant unless `end_user_limits` overrides them.
ALTER TABLE tenants
    ADD COLUMN daily_budget_micros bigint CHECK (daily_budget_micros >= 0),
    ADD COLUMN requests_per_minute integer CHECK (requests_per_minute > 0),
    ADD COLUMN end_user_daily_budget_micros bigint CHECK (end_user_daily_budget_micros >= 0),
    ADD COLUMN end_user_requests_per_minute integer CHECK (end_user_requests_per_minute > 0);

CREATE TABLE end_user_limits (
    tenant_id            uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    end_user             text NOT NULL,
    daily_budget_micros  bigint CHECK (daily_budget_micros >= 0),
    requests_per_minute  integer CHECK (requests_per_minute > 0),
    PRIMARY KEY (tenant_id, end_user)
);

-- Daily spend per tenant (scope '') and per end user (scope = the end_user), in UTC days.
-- A request's estimate is reserved at submit and converted to spend (its actual cost) when it
-- completes, or released when fal never ran it. The cap check and the reservation are one
-- statement, so concurrent requests on any number of instances cannot pass the cap together.
CREATE TABLE budget_usage (
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    scope            text NOT NULL,
    day              date NOT NULL,
    reserved_micros  bigint NOT NULL DEFAULT 0 CHECK (reserved_micros >= 0),
    spent_micros     bigint NOT NULL DEFAULT 0 CHECK (spent_micros >= 0),
    PRIMARY KEY (tenant_id, scope, day)
);

-- Fixed one-minute windows of request counts, shared by every instance.
CREATE TABLE rate_windows (
    key           text NOT NULL,
    window_start  timestamptz NOT NULL,
    count         integer NOT NULL,
    PRIMARY KEY (key, window_start)
);

-- Idempotency-Key: the first answer to a key is replayed for 24 h.
CREATE TABLE idempotency_keys (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    key           text NOT NULL,
    request_hash  bytea NOT NULL,
    status_code   integer,
    response      bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, key)
);

ALTER TABLE generations
    ADD COLUMN cached boolean NOT NULL DEFAULT false,
    ADD COLUMN cache_key text,
    ADD COLUMN budget_day date,
    ADD COLUMN reserved_micros bigint NOT NULL DEFAULT 0;
CREATE INDEX generations_cache ON generations (tenant_id, cache_key, finished_at DESC)
    WHERE status = 'completed' AND cache_key IS NOT NULL;
CREATE INDEX generations_usage ON generations (tenant_id, created_at);

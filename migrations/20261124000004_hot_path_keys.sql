-- Foreign keys that cost more than they protect on the hot path. Each checked insert takes a
-- KEY SHARE lock on the referenced row; when many transactions at once reference the same row
-- (a busy tenant, a subscription every event fans out to), Postgres must record the lockers in
-- a MultiXact: extra WAL and SLRU traffic on every callback. The rows they point at are never
-- deleted (tenants, events and subscriptions have no DELETE; subscriptions are soft-deleted),
-- and the referencing rows are written only next to what they reference: deliveries in the
-- statement that inserts their event and reads their subscription, events by code that holds
-- the tenant's id from an authenticated key or a locked generation.
ALTER TABLE events DROP CONSTRAINT events_tenant_id_fkey;
ALTER TABLE generations DROP CONSTRAINT generations_tenant_id_fkey;
ALTER TABLE deliveries
    DROP CONSTRAINT deliveries_event_id_fkey,
    DROP CONSTRAINT deliveries_subscription_id_fkey;

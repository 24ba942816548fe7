-- What each API key may do. Every existing key keeps every scope, so scripts and deploys that
-- hold one keep working; a constant default is stored once, not written into every row.
ALTER TABLE api_keys
    ADD COLUMN scopes text[] NOT NULL
        DEFAULT ARRAY['generations:write', 'generations:read', 'events:read', 'subscriptions:manage', 'admin']
        CHECK (scopes <@ ARRAY['generations:write', 'generations:read', 'events:read', 'subscriptions:manage', 'admin']
               AND cardinality(scopes) > 0);

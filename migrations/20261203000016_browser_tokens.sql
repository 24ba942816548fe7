-- Browser tokens: short-lived credentials a tenant's backend mints (`POST /v1/tokens`) for one
-- of its end users, for a front end to use directly. The token itself is signed and carries its
-- id and expiry; this row holds the rest (whose it is, what it may do) and its revocation, so
-- one indexed read settles a presented token after its signature and expiry have passed.
CREATE TABLE browser_tokens (
    id          uuid PRIMARY KEY,
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- The key that minted it: revoking that key ends its tokens, and only it revokes them.
    key_id      uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    end_user    text NOT NULL,
    scopes      text[] NOT NULL
                CHECK (scopes <@ ARRAY['generations:write', 'generations:read', 'events:read']
                       AND cardinality(scopes) > 0),
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
CREATE INDEX browser_tokens_key ON browser_tokens (key_id);
-- Expired tokens are pruned by the retention sweep, oldest first.
CREATE INDEX browser_tokens_expiry ON browser_tokens (expires_at);

-- Which web origins may call the API from a browser with this tenant's credentials (CORS), and
-- whether every request of the tenant must run fal's safety checker.
ALTER TABLE tenants
    ADD COLUMN allowed_origins text[] NOT NULL DEFAULT '{}',
    ADD COLUMN require_safety_checker boolean NOT NULL DEFAULT false;

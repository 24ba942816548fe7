-- The usage report reads a tenant's generations of a period as a range of UUIDv7 ids in
-- `generations_tenant_recent`; this index was one more entry on every generation write.
DROP INDEX generations_usage;

-- Per-subscription lanes: when an attempt settles, the worker refills that subscription's freed
-- in-flight slot with its oldest due delivery in the same statement. These make that a short
-- index range per subscription instead of a scan of the whole due backlog.
CREATE INDEX deliveries_subscription_first_lane ON deliveries (subscription_id, next_attempt_at)
    WHERE status = 'pending' AND attempts = 0;
CREATE INDEX deliveries_subscription_retry_lane ON deliveries (subscription_id, next_attempt_at)
    WHERE status = 'pending' AND attempts > 0;

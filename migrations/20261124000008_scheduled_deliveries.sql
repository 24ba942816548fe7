-- The global lanes indexed every pending delivery a second time (the per-subscription lanes
-- already hold each one, and serve every claim, refill and sweep, per-request `webhook_url`
-- deliveries included: their subscription is NULL). All they served besides was finding the
-- next delivery scheduled for later (`delivery_queue::next_due`) — and a delivery is scheduled
-- later than it was created only when it was held back or a retry was set. Only those are
-- indexed now: a fan-out creates its deliveries due at once, with one index entry fewer each.
DROP INDEX deliveries_first_lane;
DROP INDEX deliveries_retry_lane;
CREATE INDEX deliveries_scheduled ON deliveries (next_attempt_at)
    WHERE status = 'pending' AND next_attempt_at > created_at;

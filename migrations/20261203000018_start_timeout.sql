-- The start timeout a generation asked fal for (`X-Fal-Request-Timeout`), so a resubmission
-- asks for the same and a timed-out result is recognised as the caller's own deadline.
ALTER TABLE generations ADD COLUMN start_timeout_secs integer;

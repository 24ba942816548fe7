-- Retention prunes fal's stored callbacks by age. A BRIN index suits a column written in time
-- order: a few pages summarise millions of rows, and an insert rarely touches it (unlike a
-- B-tree, which would add an entry to every callback's write).
CREATE INDEX fal_callbacks_received_brin ON fal_callbacks USING brin (received_at);

-- Deliveries take their ids from gen_random_uuid() (random, not time-ordered), so retention
-- finds old ones by creation time. A B-tree on an always-increasing timestamp only ever adds
-- to its rightmost page: the cheapest index a hot table can carry (its cost is in README,
-- "Scale"). It also finds the few old deliveries still pending, whose events must stay.
CREATE INDEX deliveries_created ON deliveries (created_at);

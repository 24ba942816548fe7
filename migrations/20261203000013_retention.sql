-- Retention prunes fal's stored callbacks by age. A BRIN index suits a column written in time
-- order: a few pages summarise millions of rows, and an insert rarely touches it (unlike a
-- B-tree, which would add an entry to every callback's write).
CREATE INDEX fal_callbacks_received_brin ON fal_callbacks USING brin (received_at);

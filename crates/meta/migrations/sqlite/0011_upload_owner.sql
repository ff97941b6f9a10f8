-- Security: each upload session records whose it is (an account's name, `robot$name`, or
-- `anonymous@<client address>`), so that `[limits] max_open_uploads_per_account` is counted
-- here, the same for every replica. Sessions opened before this migration have no owner and
-- count for nobody; they end as any session does (finished, cancelled or expired).
ALTER TABLE uploads ADD COLUMN owner TEXT;
CREATE INDEX uploads_owner ON uploads(owner);

-- Upload expiry lists idle sessions, oldest first.
CREATE INDEX uploads_updated_at ON uploads(updated_at);

-- +goose Up

-- Sensitive policy configuration values (a basic-authentication password),
-- AES-256-GCM sealed like credentials with "<id>/sensitive" as associated
-- data: a JSON object from JSON Pointer into the request to the value. The
-- request column holds "********" in their place.
ALTER TABLE protections ADD COLUMN sensitive bytea;

-- +goose Down
ALTER TABLE protections DROP COLUMN sensitive;

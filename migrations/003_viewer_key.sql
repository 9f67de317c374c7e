-- durable-flow schema, version 3: a key of the viewer's, shared by every web process through the database.
-- Released migrations are never edited; add a new numbered file instead.

-- Random values durable-flow keeps for itself. `viewer_csrf` signs the viewer's CSRF tokens (an HMAC
-- binding a browser's cookie to its signed-in user), so that any number of web processes accept each
-- other's tokens with nothing to configure. To rotate it, delete the row and restart the web processes:
-- the first to need it makes a new one (each process reads it once); pages opened before must be
-- reloaded before their forms work again.
CREATE TABLE {{schema}}.durable_flow_secrets (
  name        text PRIMARY KEY,
  value       text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);
-- Two v4 UUIDs: 244 random bits from the server's strong random source (gen_random_uuid is built in since Postgres 13).
INSERT INTO {{schema}}.durable_flow_secrets (name, value)
VALUES ('viewer_csrf', replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''));

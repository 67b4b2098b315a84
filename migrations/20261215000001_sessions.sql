-- Browser sessions of a portal with an access token.
--
-- A session is a random 32-byte id in an HttpOnly cookie; the table keeps
-- only the SHA-256 of that id, so a copy of the database signs nobody in.
-- `token_tag` names the access token the session was signed in with (an
-- HMAC of the token, never the token): a portal started with another token
-- finds none of the old sessions. `expires_at` (Unix seconds) slides forward
-- while the session is used; logout deletes the row.
CREATE TABLE sessions (
    id_sha256  TEXT PRIMARY KEY,
    token_tag  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);

-- Expired sessions are deleted as new ones are made.
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Audio files clients upload for calls (services/speech.py): decoded once to
-- telephone audio (PCM16 little-endian mono, 8 kHz) and played as stored.
-- In the database, not on a disk: a cluster shares only PostgreSQL.
--sqlite: CREATE TABLE audio_files (id {{autoid}}, account_id TEXT NOT NULL, name TEXT NOT NULL, content_type TEXT NOT NULL, seconds DOUBLE PRECISION NOT NULL, size BIGINT NOT NULL, pcm BLOB NOT NULL, created_at BIGINT NOT NULL);
--pg: CREATE TABLE audio_files (id {{autoid}}, account_id TEXT NOT NULL, name TEXT NOT NULL, content_type TEXT NOT NULL, seconds DOUBLE PRECISION NOT NULL, size BIGINT NOT NULL, pcm BYTEA NOT NULL, created_at BIGINT NOT NULL);
-- content_type: the uploaded file's format (audio/mpeg, audio/wav, audio/flac); size: its bytes
CREATE INDEX audio_files_account ON audio_files(account_id, id);

-- Schema version 4: the fleet's TUF repository (metadata, model packages and the online
-- snapshot and timestamp keys), so every scale-out replica publishes to and serves from one
-- copy. Names are the repository's relative file names (fleet/tufrepo.Storage).

CREATE TABLE tuf_files (
	name text COLLATE "C" PRIMARY KEY,
	data bytea NOT NULL,
	written_at timestamptz NOT NULL DEFAULT now()
);

-- Packages are compressed already, and blocks are read by offset (substring): keep the
-- column out of line and uncompressed so a block read touches only its own chunks.
ALTER TABLE tuf_files ALTER COLUMN data SET STORAGE EXTERNAL;

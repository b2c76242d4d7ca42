-- Event payloads and view documents are compressed with lz4 rather than pglz when they are
-- large enough to be compressed at all: under the public page, pglz compressing batches of
-- hits was PostgreSQL's most expensive function. lz4 compresses and decompresses in a
-- fraction of the time. A server built without lz4 keeps pglz.
DO $$
BEGIN
    ALTER TABLE events ALTER COLUMN data SET COMPRESSION lz4;
    ALTER TABLE views ALTER COLUMN doc SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available; payloads stay compressed with pglz';
END;
$$;

-- Read-model documents are stored as the JSON text the store writes, as the embedded store
-- keeps them. PostgreSQL never looks inside a document (no query reads a field of it), and
-- building jsonb from every document upserted was 4% of the machine's CPU under
-- POST /v1/widgets (BENCHMARKS.md, "The request's shared state and the allocator").
-- The rewrite of the table is the read models' own: they are rebuilt from the log anyway.
ALTER TABLE views ALTER COLUMN doc TYPE text USING doc::text;
DO $$
BEGIN
    ALTER TABLE views ALTER COLUMN doc SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported THEN
    RAISE NOTICE 'lz4 is not available; documents stay compressed with pglz';
END;
$$;

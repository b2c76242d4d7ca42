-- A data key archived under a legal hold (R21): the data it seals is past its retention date
-- and kept only because of a hold. Ordinary reads no longer get the key (the data reads as
-- erased); only the compliance read of the hold's data does. Releasing the hold lets the
-- sweep shred it as any other.
ALTER TABLE data_keys ADD COLUMN archived_at timestamptz;

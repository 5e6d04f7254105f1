-- Stored lab results per (model, stream), kept in the transaction that stores them: a replica
-- learns which streams' biases another one moved from this small table (one row per
-- stream), not by counting every result ever stored.
CREATE TABLE lab_streams (
    model TEXT NOT NULL,
    stream TEXT NOT NULL,
    results BIGINT NOT NULL,
    PRIMARY KEY (model, stream)
);
INSERT INTO lab_streams (model, stream, results)
    SELECT model, stream, COUNT(*) FROM lab_results GROUP BY model, stream;

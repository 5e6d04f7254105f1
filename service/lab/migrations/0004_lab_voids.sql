-- A lab result's result time (when it was known: analyzed, entered), and the audit trail of
-- voided results: an admin's void moves the result here whole, with who, when and why, so the
-- stream's bias is replayed without it.
ALTER TABLE lab_results ADD COLUMN result_time DOUBLE PRECISION;
CREATE TABLE lab_voids (
    model TEXT NOT NULL,
    stream TEXT NOT NULL,
    sample_time DOUBLE PRECISION NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    received DOUBLE PRECISION NOT NULL,
    estimate DOUBLE PRECISION,
    residual DOUBLE PRECISION,
    accepted BOOLEAN NOT NULL,
    reason TEXT,
    result_time DOUBLE PRECISION,
    voided_at DOUBLE PRECISION NOT NULL,
    voided_by TEXT NOT NULL,
    void_reason TEXT NOT NULL
);
CREATE INDEX lab_voids_model ON lab_voids (model, voided_at);
-- A stream's count now counts changes (a result stored, a result voided): a replica that
-- sees it move replays that stream's bias, even when a void and a new result cancel out.
ALTER TABLE lab_streams RENAME COLUMN results TO changes;

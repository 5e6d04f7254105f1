-- Lab results (acknowledged means committed) and the prediction log they are matched
-- against: the same tables and keys as the embedded SQLite engine.
CREATE TABLE lab_results (
    model TEXT NOT NULL,
    stream TEXT NOT NULL,
    sample_time DOUBLE PRECISION NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    received DOUBLE PRECISION NOT NULL,
    estimate DOUBLE PRECISION,
    residual DOUBLE PRECISION,
    accepted BOOLEAN NOT NULL,
    reason TEXT,
    PRIMARY KEY (model, stream, sample_time)
);
CREATE INDEX lab_results_time ON lab_results (sample_time);
CREATE TABLE predictions (
    model TEXT NOT NULL,
    stream TEXT NOT NULL,
    sample_time DOUBLE PRECISION NOT NULL,
    estimate DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (model, stream, sample_time)
);

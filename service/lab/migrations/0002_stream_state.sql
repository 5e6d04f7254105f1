-- Each stream's carried state (lag history, data clock, sensor trackers) as the replica that
-- scored its latest rows left it, so that the next request may land on any replica.
CREATE TABLE stream_state (
    model TEXT NOT NULL,
    stream TEXT NOT NULL,
    token TEXT NOT NULL,
    version TEXT NOT NULL,
    payload BYTEA NOT NULL,
    PRIMARY KEY (model, stream)
);

-- Schema version 2: captured windows (fleet.CaptureStore), so replicas sharing the capture
-- subscription store and ack captures like results.

-- The highest seq stored per (device, epoch), kept after retention deletes the items so a
-- resent pruned item is still a duplicate. AppendCaptures locks these rows in key order.
CREATE TABLE capture_marks (
	device text COLLATE "C" NOT NULL,
	epoch  bigint NOT NULL,
	mark   bigint NOT NULL, -- seq - 2^63
	PRIMARY KEY (device, epoch)
);

CREATE TABLE captures (
	device      text COLLATE "C" NOT NULL,
	epoch       bigint NOT NULL,
	seq         bigint NOT NULL, -- seq - 2^63
	received_ns bigint NOT NULL, -- controller clock: query order and retention
	model       text COLLATE "C" NOT NULL, -- Result.Model, NAME@VERSION
	body        json NOT NULL,   -- fleet.CapturedItem
	PRIMARY KEY (device, epoch, seq)
);
-- Queries and retention walk items in received order; the key breaks ties so paging is exact.
CREATE INDEX captures_by_received ON captures (received_ns, device, epoch, seq);

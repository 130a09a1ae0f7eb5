-- Outpost controller state, schema version 1. Conventions (see pgstore's package comment):
-- ids and names are text COLLATE "C" so ORDER BY is byte order whatever the database's locale;
-- sequence numbers (uint64 on the wire) are stored as seq - 2^63 in bigint so that SQL orders
-- them over the whole uint64 range; epochs and counters are uint64 stored bit for bit in bigint;
-- times that filters or orderings compare exactly are Unix nanoseconds (bigint), minute
-- buckets are timestamptz; records the controller reads back whole are json (kept verbatim).

CREATE TABLE devices (
	id     text COLLATE "C" PRIMARY KEY,
	record json NOT NULL -- fleet.Device
);

-- One row per device that ever sent results: its current epoch and how many results and
-- rejections it keeps (the quota). AppendResults locks these rows (SELECT ... FOR UPDATE), in
-- device order, so two controller replicas never interleave writes for one device.
CREATE TABLE result_devices (
	device text COLLATE "C" PRIMARY KEY,
	epoch  bigint NOT NULL DEFAULT 0,
	kept   bigint NOT NULL DEFAULT 0
);

-- One row per sequence space (device, epoch): fleet.ResultStats.
CREATE TABLE spaces (
	device      text COLLATE "C" NOT NULL,
	epoch       bigint NOT NULL,
	stored      bigint NOT NULL,
	duplicates  bigint NOT NULL,
	dropped     bigint NOT NULL,
	contiguous  bigint NOT NULL, -- the ack watermark, as a seq key (seq - 2^63)
	rejected    bigint NOT NULL,
	advanced_ns bigint NOT NULL, -- 0: unknown
	max_seq     bigint NOT NULL, -- at least the highest seq key stored or rejected (spares a lookup above the watermark)
	PRIMARY KEY (device, epoch)
);

CREATE TABLE results (
	device      text COLLATE "C" NOT NULL,
	epoch       bigint NOT NULL,
	seq         bigint NOT NULL, -- seq - 2^63
	time_ns     bigint NOT NULL, -- wire.Result.Time (device clock)
	received_ns bigint NOT NULL, -- controller clock, for retention
	event       boolean NOT NULL,
	body        json NOT NULL,   -- wire.Result
	PRIMARY KEY (device, epoch, seq)
);
CREATE INDEX results_by_time ON results (device, time_ns);
CREATE INDEX results_by_received ON results (received_ns);

CREATE TABLE rejected (
	device text COLLATE "C" NOT NULL,
	epoch  bigint NOT NULL,
	seq    bigint NOT NULL, -- seq - 2^63
	reason text NOT NULL,
	PRIMARY KEY (device, epoch, seq)
);

CREATE TABLE feedback (
	device text COLLATE "C" NOT NULL,
	epoch  bigint NOT NULL,
	seq    bigint NOT NULL, -- seq - 2^63
	record json NOT NULL,   -- fleet.Feedback
	PRIMARY KEY (device, epoch, seq),
	FOREIGN KEY (device, epoch, seq) REFERENCES results ON DELETE CASCADE
);

CREATE TABLE output_buckets (
	device     text COLLATE "C" NOT NULL,
	model      text COLLATE "C" NOT NULL,
	start      timestamptz NOT NULL,
	count      bigint NOT NULL,
	events     bigint NOT NULL,
	score_sum  double precision NOT NULL,
	score_min  double precision NOT NULL,
	score_max  double precision NOT NULL,
	labels     json,     -- label -> results
	score_hist bigint[] NOT NULL,
	PRIMARY KEY (device, model, start)
);
CREATE INDEX output_buckets_by_start ON output_buckets (start);

CREATE TABLE health (
	device text COLLATE "C" NOT NULL,
	start  timestamptz NOT NULL,
	record json NOT NULL, -- wire.Health
	PRIMARY KEY (device, start)
);
CREATE INDEX health_by_start ON health (start);

-- A drift record's identity is (device, model name@version, window, window start): the agent's
-- window counter restarts at 1 with the agent.
CREATE TABLE drift (
	device        text COLLATE "C" NOT NULL,
	model_name    text COLLATE "C" NOT NULL,
	model_version text COLLATE "C" NOT NULL,
	win           bigint NOT NULL,
	start_ns      bigint NOT NULL, -- Summary.Start
	end_ns        bigint NOT NULL, -- Summary.End: queries bound and order by it
	received_ns   bigint NOT NULL, -- retention
	record        json NOT NULL,   -- fleet.DriftRecord
	PRIMARY KEY (device, model_name, model_version, win, start_ns)
);
CREATE INDEX drift_by_end ON drift (end_ns);
CREATE INDEX drift_by_received ON drift (received_ns);

CREATE TABLE models (
	name    text COLLATE "C" NOT NULL,
	version text COLLATE "C" NOT NULL,
	release bigint NOT NULL,
	record  json NOT NULL, -- fleet.Model
	PRIMARY KEY (name, version)
);

CREATE TABLE packages (
	sha256 text COLLATE "C" PRIMARY KEY,
	data   bytea NOT NULL
);

CREATE TABLE rollouts (
	id         text COLLATE "C" PRIMARY KEY,
	created_ns bigint NOT NULL,
	record     json NOT NULL -- fleet.Rollout
);

CREATE TABLE desired (
	device text COLLATE "C" PRIMARY KEY,
	record json NOT NULL -- fleet.DeviceDesired
);

CREATE TABLE tags (
	device text COLLATE "C" PRIMARY KEY,
	tags   json NOT NULL
);

-- Schema version 3: per-device monitoring settings (fleet.DevicePolicy), merged by the rollout
-- engine into the desired states it publishes.

CREATE TABLE device_policies (
	device text COLLATE "C" PRIMARY KEY,
	record json NOT NULL -- fleet.DevicePolicy
);

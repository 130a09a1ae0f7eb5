//go:build !race

package rollout

// raceSkip is empty without the race detector (see race_on_test.go).
const raceSkip = ""

// fleetSize is the simulated fleet of TestFleetOverBroker.
const fleetSize = 200

// restartBroker: the broker restarts with the control plane, as `outpost serve` restarts both.
const restartBroker = true

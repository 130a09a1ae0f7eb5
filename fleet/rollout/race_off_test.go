//go:build !race

package rollout

// fleetSize is the simulated fleet of TestFleetOverBroker (see race_on_test.go).
const fleetSize = 200

// restartBroker: without the race detector the broker restarts with the control plane, as
// `outpost serve` restarts both (see race_on_test.go for why -race does not).
const restartBroker = true

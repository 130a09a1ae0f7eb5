//go:build !race

package rollout

// fleetSize is the simulated fleet of TestFleetOverBroker (see race_on_test.go).
const fleetSize = 200

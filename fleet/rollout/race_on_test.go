//go:build race

package rollout

// fleetSize is the simulated fleet of TestFleetOverBroker. The race detector slows every
// MQTT client and the broker several times over on a shared 2-core machine, so under -race the
// test runs a quarter of the fleet; without it, the full 200.
const fleetSize = 50

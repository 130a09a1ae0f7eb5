//go:build race

package main

// fleetAgents is the fleet of TestFleetRollouts. The race detector slows every agent, MQTT
// client and the broker several times over on a shared 2-core machine, so under -race the test
// runs a tenth of the fleet; without it, the full 200.
const fleetAgents = 20

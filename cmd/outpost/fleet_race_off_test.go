//go:build !race

package main

// fleetAgents is the fleet of TestFleetRollouts (see fleet_race_on_test.go).
const fleetAgents = 200

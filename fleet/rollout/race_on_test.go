//go:build race

package rollout

// raceSkip: under -race TestFleetOverBroker is skipped; make test runs it without the race
// detector right after the race pass. mochi-mqtt v2.7.9 writes its retained-message index
// without a lock while a concurrent subscribe scans it (mochi-mqtt/server#200): dozens of
// devices resubscribing while the engine republishes their retained desired states trip the
// race detector inside the library, whatever the fleet size (seen at 50 devices with the
// broker kept running). The engine survives the message that race can lose
// (Options.ResendAfter); the rollout engine's own concurrency is covered under -race by the
// engine tests, which use the same engine with an in-process publisher.
const raceSkip = "the embedded broker's retained index races a concurrent subscribe (mochi-mqtt/server#200); make test runs this test without -race"

// fleetSize and restartBroker are the plain run's (race_off_test.go); kept so the test builds.
const (
	fleetSize     = 50
	restartBroker = false
)

//go:build race

package rollout

// fleetSize is the simulated fleet of TestFleetOverBroker. The race detector slows every
// MQTT client and the broker several times over on a shared 2-core machine, so under -race the
// test runs a quarter of the fleet; without it, the full 200.
const fleetSize = 50

// restartBroker: under -race the embedded broker is kept running when the control plane
// restarts. mochi-mqtt v2.7.9 writes its retained-message index without a lock while a
// concurrent subscribe scans it (mochi-mqtt/server#200); 50 devices resubscribing while the
// engine republishes their retained desired states trip the race detector inside the library.
// The engine survives the lost message that race can cause (Options.ResendAfter); the plain
// run of this test (make test runs it without -race too) restarts the broker.
const restartBroker = false

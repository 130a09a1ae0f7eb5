package broker

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Shutdown stops srv as srv.Close does, without the deadlock in mochi v2.7.9's Close
// (mochi-mqtt/server issue 488): Close disconnects clients through Clients.GetByListener, which
// read-locks the client map and then read-locks it again through Clients.Len. A client leaving
// at that moment queues Clients.Delete's write lock between the two, and both wait forever; the
// controller's shutdown and the tests' brokers hung so. Shutdown first closes every listener with
// a closer that reads the client map once; a listener runs its closer only the first time it is
// closed, so the srv.Close that follows has only the hooks left to stop. Every caller that owns a
// mochi server closes it here, tests included.
func Shutdown(srv *mqtt.Server) {
	srv.Listeners.CloseAll(func(listener string) {
		for _, cl := range srv.Clients.GetAll() {
			if cl.Net.Listener == listener && !cl.Closed() {
				_ = srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
			}
		}
	})
	_ = srv.Close()
}

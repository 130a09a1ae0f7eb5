// Package exepages gives back the pages of the agent's own executable that start-up touched
// and steady state does not use.
//
// A Go binary's code and read-only data are mapped from its file. Start-up (package
// initialisation, flag and config parsing, the model loader, TLS and MQTT set-up) touches
// pages of them that the running agent never needs again, and the kernel maps more than was
// touched: each fault maps up to 64 KiB of neighbouring pages already in the page cache
// ("fault-around"), and each page read from storage brings its neighbours with it
// (read-ahead). On a 10 MiB binary that leaves about 10 MiB resident where the loop uses
// about 2 (docs/performance.md, "The agent's resident set with a vision model").
//
// Release unmaps the binary's read-only mappings, drops their now unmapped pages from the
// page cache and turns read-ahead off for them, so that from then on a page is resident
// because the agent touched it. Writable mappings (the binary's data and bss) are never
// touched: dropping them would lose their contents.
package exepages

import "errors"

// Stats is what Release did.
type Stats struct {
	Mappings int    // read-only mappings of the executable advised
	Bytes    uint64 // their total length
	// Before and After are the mappings' resident bytes just before and just after.
	Before, After uint64
}

// ErrUnsupported is returned where the platform has no way to do it (not Linux).
var ErrUnsupported = errors.New("exepages: not supported on this platform")

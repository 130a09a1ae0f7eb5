package update

import (
	"github.com/outpost-ml/outpost/agent"
	"github.com/outpost-ml/outpost/fleet/wire"
)

// SeedHighestRelease writes a record of a device that once committed release highest and
// runs active now.
func SeedHighestRelease(st agent.StateStore, active wire.ModelRef, highest uint64) error {
	r := record{Phase: Committed, Highest: highest, Active: Entry{Ref: active}}
	return saveRecord(st, &r)
}

// Package update is the agent's model-update state machine: it brings a model the
// controller's Desired state names from signed metadata to the active Predictor, through
// downloading → verifying → staging → shadow (optional) → activating → probation →
// committed, or back to the previous model by itself. Every phase is written to the
// StateStore before its side effect, so a SIGKILL or power cut in any phase leaves a working
// model on restart and the update either finishes or rolls back (resume below).
//
// The package owns its seams (Trust, Downloader, DesiredSource, Publisher); agent/assemble
// wires the real TUF client and MQTT downloader into them.
package update

import "github.com/outpost-ml/outpost/fleet/wire"

// Phases are wire's, so what is persisted is what is reported.
const (
	Idle        = wire.PhaseIdle
	Downloading = wire.PhaseDownloading
	Verifying   = wire.PhaseVerifying
	Staging     = wire.PhaseStaging
	Shadow      = wire.PhaseShadow
	Activating  = wire.PhaseActivating
	Probation   = wire.PhaseProbation
	Committed   = wire.PhaseCommitted
	RolledBack  = wire.PhaseRolledBack
	Failed      = wire.PhaseFailed
)

// Result is how a phase's work ended.
type Result int

const (
	OK       Result = iota // the phase's work succeeded
	Refused                // the candidate is bad (one-line reason); it never becomes or stays active
	Rollback               // the controller ordered a return to the previous model
)

func (r Result) String() string {
	switch r {
	case OK:
		return "ok"
	case Refused:
		return "refused"
	case Rollback:
		return "rollback"
	}
	return "result?"
}

// Terminal reports whether p ends an update: nothing runs until the next Desired.
func Terminal(p string) bool {
	switch p {
	case Idle, Committed, RolledBack, Failed:
		return true
	}
	return false
}

// next is the phase after p ended with r. withShadow says whether the Desired state asks for
// a shadow run. Before activation the active model never changed, so a refusal or rollback
// order ends in Failed; from activation on the candidate is active and both roll back.
func next(p string, r Result, withShadow bool) string {
	if Terminal(p) {
		if p == Committed && r == Rollback {
			return RolledBack
		}
		return p
	}
	if r != OK {
		switch p {
		case Activating, Probation:
			return RolledBack
		}
		return Failed
	}
	switch p {
	case Downloading:
		return Verifying
	case Verifying:
		return Staging
	case Staging:
		if withShadow {
			return Shadow
		}
		return Activating
	case Shadow:
		return Activating
	case Activating:
		return Probation
	case Probation:
		return Committed
	}
	return Failed
}

// MaxProbationRestarts is how many times an agent restarted during one probation continues
// it; one more restart rolls the candidate back, since a model that keeps the agent from
// running for a whole probation is not one to keep.
const MaxProbationRestarts = 1

// resume is the phase to carry on with after a restart found the record in p, restarts
// being how many restarts already happened during p's probation. Work before activation is
// redone from its start (downloads resume from their partial file); activation is redone,
// being idempotent; probation restarts its clock, or rolls back after too many restarts.
func resume(p string, restarts int) string {
	switch p {
	case Downloading, Verifying, Staging, Shadow, Activating:
		return p
	case Probation:
		if restarts >= MaxProbationRestarts {
			return RolledBack
		}
		return Probation
	case Idle, Committed, RolledBack, Failed:
		return p
	}
	// An unknown phase (a newer agent's record after a downgrade): the safe reading is that
	// the candidate must not stay active.
	return RolledBack
}

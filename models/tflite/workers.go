package tflite

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Threaded Invoke. With Options.Threads = N > 1 an Interpreter keeps N-1 helper goroutines
// for its lifetime; a kernel splits its big loops into parts (Node.Parallel) that the caller
// of Invoke and the helpers take in turn. Parts write disjoint outputs and each output is
// computed exactly as with one thread, so results are the same bits for every N. Dispatch
// allocates nothing: the task is an interface holding a pointer the kernel already owns, and
// the helpers wait on channels made once.

// Task is a kernel's splittable work: RunPart(worker, part) does part number part; worker
// (0 ≤ worker < Node.Workers()) picks the per-worker scratch, since parts run concurrently.
type Task interface {
	RunPart(worker, part int)
}

// pool is the helpers of one Interpreter.
//
// Waking a parked goroutine costs tens of µs (a futex wake, then the woken thread steals the
// goroutine from the waker's run queue), as long as one of MobileNet's smaller layers takes
// to compute: with a wake-up per layer, two threads were no faster than one. So the helpers
// are woken at the start of an Invoke and then poll for jobs (yielding their P now and then,
// so other goroutines still run); a helper that has found no job for maxPoll parks, and the
// next job wakes it. On an idle machine the helpers poll through a whole Invoke; on a busy
// one they give their cores back. Between Invokes they cost nothing.
//
// Each worker owns a contiguous run of a job's parts and takes them from the front; one that
// has finished its own takes the others' from the back. Kernels number parts in memory order
// (output rows, element ranges), so a worker computes the same region of every layer and
// reads the previous layer's output from its own core's cache: with one shared counter, the
// parts went to whichever core asked first, and depthwise and ADD layers, which read more
// than they compute, took 25–60 % more CPU time on two threads than on one.
//
// A job never waits for a helper that has not started on it: the caller takes the helper's
// parts too, and when none is left it closes the job; a helper that comes after that finds
// the job closed. On a busy machine a helper may not get a core for milliseconds, and a
// barrier on every helper would make each layer wait for the slowest; this way a late helper
// costs nothing and an early one takes its share of parts.
type pool struct {
	start   []chan struct{} // one per helper, one pending wake-up at most; closed by stop
	asleep  []atomic.Bool   // helper i is parked on start[i], or about to be
	idle    chan struct{}   // the last helper of a closed job tells the caller here
	stopped sync.Once

	// busy is set for the length of an Invoke: helpers poll for jobs (for up to maxPoll)
	// instead of parking at once.
	busy atomic.Bool

	// state is the job's open flag and its number of joined helpers (jobOpen | count).
	// A helper joins only while the job is open; run closes it and waits until the count
	// is 0, so task and parts do not change while a joined helper reads them.
	state atomic.Uint64

	// jobs counts the jobs opened, so that a helper that has drained one does not join it
	// again while the caller finishes its last part.
	jobs atomic.Uint64

	// Set by run before the job is opened; read by joined helpers.
	task  Task
	spans []span       // worker w's parts, one per worker
	fault atomic.Value // the first panic of a helper, as a string
}

// span is the parts [lo, hi) not yet taken of one worker's run, as lo<<32 | hi, alone on its
// cache line so that taking one's own parts does not disturb the other cores.
type span struct {
	lohi atomic.Uint64
	_    [56]byte
}

// take removes the first part of the span (front: its owner) or the last (a thief).
func (s *span) take(front bool) (int, bool) {
	for {
		v := s.lohi.Load()
		lo, hi := v>>32, v&0xffffffff
		if lo >= hi {
			return 0, false
		}
		next, part := (lo+1)<<32|hi, lo
		if !front {
			next, part = lo<<32|(hi-1), hi-1
		}
		if s.lohi.CompareAndSwap(v, next) {
			return int(part), true
		}
	}
}

const jobOpen = 1 << 32

// maxPoll is how long a helper polls for the next job, or the caller for the end of a
// helper's last part, before it parks. Between two split layers of a model there are a few
// µs of unsplit ones; on a machine whose other cores are busy, a goroutine that polls longer
// holds a core that the one it waits for may need.
const maxPoll = 50 * time.Microsecond

// pollCheck is how many empty polls go between looks at the clock.
const pollCheck = 64

// pollYield is how many empty polls (a few ns each) a waiting goroutine makes between yields
// of its P: often enough that other goroutines wait µs, rarely enough that the scheduler's
// lock (which every yield takes) is not what the two cores spend their time on.
const pollYield = 1024

func newPool(threads int) *pool {
	p := &pool{
		start:  make([]chan struct{}, threads-1),
		asleep: make([]atomic.Bool, threads-1),
		idle:   make(chan struct{}, 1),
		spans:  make([]span, threads),
	}
	for i := range p.start {
		p.start[i] = make(chan struct{}, 1)
		go p.helper(i+1, p.start[i], &p.asleep[i])
	}
	return p
}

// helper takes parts of jobs until its channel is closed: parked between Invokes, polling
// during one.
func (p *pool) helper(worker int, start <-chan struct{}, asleep *atomic.Bool) {
	var done uint64 // the last job this helper drained
	for {
		// Dekker-style hand-shake with wake: this side stores asleep then loads jobs and
		// state, run stores those then loads asleep, so one of the two sees the other and
		// a helper never sleeps through a job (sync/atomic operations are sequentially
		// consistent).
		asleep.Store(true)
		if p.jobs.Load() == done || p.state.Load()&jobOpen == 0 {
			if _, ok := <-start; !ok {
				return
			}
		}
		asleep.Store(false)
		idleSince := time.Now()
		for polls := 1; ; polls++ {
			if job := p.jobs.Load(); job != done && p.join() {
				p.work(worker)
				done, polls, idleSince = job, 0, time.Now()
				continue
			}
			if !p.busy.Load() {
				break
			}
			if polls%pollCheck == 0 {
				if time.Since(idleSince) > maxPoll {
					break // park: the core may be wanted by another thread
				}
				if polls%pollYield == 0 {
					runtime.Gosched()
				}
			}
		}
	}
}

// work drains the joined job and leaves it, telling the caller if it was the last helper of
// a closed job. A panic in a part is kept for the caller to raise.
func (p *pool) work(worker int) {
	defer func() {
		if r := recover(); r != nil {
			p.fault.CompareAndSwap(nil, fmt.Sprint(r))
			p.empty() // the others stop taking parts
		}
		if s := p.state.Add(^uint64(0)); s == 0 {
			p.idle <- struct{}{} // closed, and this was the last helper in it
		}
	}()
	p.drain(worker)
}

// join adds the calling helper to the open job; false when there is none.
func (p *pool) join() bool {
	for {
		s := p.state.Load()
		if s&jobOpen == 0 {
			return false
		}
		if p.state.CompareAndSwap(s, s+1) {
			return true
		}
	}
}

// drain runs the worker's own parts, then the others' from their ends, until none is left.
func (p *pool) drain(worker int) {
	for k := range p.spans {
		v := (worker + k) % len(p.spans)
		for {
			i, ok := p.spans[v].take(k == 0)
			if !ok {
				break
			}
			p.task.RunPart(worker, i)
		}
	}
}

// empty takes every part left, so that no worker starts another.
func (p *pool) empty() {
	for i := range p.spans {
		p.spans[i].lohi.Store(0)
	}
}

// begin starts an Invoke: the helpers start polling for jobs.
func (p *pool) begin() {
	p.busy.Store(true)
	p.wake(len(p.start))
}

// end lets the helpers park once they have left the last job.
func (p *pool) end() { p.busy.Store(false) }

// wake sends a wake-up to each of the first n helpers that is parked.
func (p *pool) wake(n int) {
	for i, c := range p.start[:n] {
		if !p.asleep[i].Load() {
			continue // polling: it will see the job
		}
		select {
		case c <- struct{}{}:
		default: // a wake-up is already pending
		}
	}
}

// run does parts parts of t on the calling goroutine (worker 0) and the helpers that join in
// time, and returns when all are done. A panic in a part, here or in a helper, is raised
// here (where Invoke recovers it) once no helper is left in the job.
func (p *pool) run(parts int, t Task) {
	p.task = t
	w := uint64(len(p.spans))
	for i := range p.spans {
		lo, hi := uint64(i)*uint64(parts)/w, uint64(i+1)*uint64(parts)/w
		p.spans[i].lohi.Store(lo<<32 | hi)
	}
	p.jobs.Add(1)
	p.state.Store(jobOpen)
	p.wake(min(len(p.start), parts-1)) // those that stopped polling

	defer p.finish()
	p.drain(0)
}

// finish closes the job, so that no helper joins it any more, and waits for those that did.
// On a panic of the caller's part it lets the helpers stop early and raises it again after.
func (p *pool) finish() {
	r := recover()
	if r != nil {
		p.empty()
	}
	if s := p.state.Add(^uint64(jobOpen - 1)); s != 0 {
		// A joined helper is on its last part. Poll for it rather than park: being woken by
		// it would put this goroutine on the helper's run queue, not back on its own core.
		// But only for maxPoll: a helper whose thread has lost its core (a busy machine)
		// may need this one.
		t0 := time.Now()
		for polls := 1; p.state.Load() != 0; polls++ {
			if polls%pollCheck == 0 {
				if time.Since(t0) > maxPoll {
					break
				}
				if polls%pollYield == 0 {
					runtime.Gosched()
				}
			}
		}
		<-p.idle // the last helper's token, sent as it leaves
	}
	p.task = nil
	f := p.fault.Load()
	p.fault = atomic.Value{}
	switch {
	case r != nil:
		panic(r)
	case f != nil:
		panic(f)
	}
}

// stop ends the helpers; Close and the cleanup may both call it.
func (p *pool) stop() {
	p.stopped.Do(func() {
		for _, c := range p.start {
			close(c)
		}
	})
}

// Workers is the number of goroutines that may run this node's parts at once (Options.Threads,
// at least 1). Prepare sizes per-worker scratch with it.
func (n *Node) Workers() int {
	if n.graph == nil || n.graph.ip.pool == nil {
		return 1
	}
	return len(n.graph.ip.pool.start) + 1
}

// Parallel runs t.RunPart for every part in [0, parts) across the interpreter's workers and
// returns when all have finished; with one worker, or one part, it runs them in order here.
// Call it only from Eval.
func (n *Node) Parallel(parts int, t Task) {
	if parts <= 0 {
		return
	}
	if n.Workers() == 1 || parts == 1 {
		for i := range parts {
			t.RunPart(0, i)
		}
		return
	}
	n.graph.ip.pool.run(parts, t)
}

// startWorkers gives ip its helpers and stops them once ip is unreachable, so an Interpreter
// that is dropped without Close leaks no goroutines.
func (ip *Interpreter) startWorkers(threads int) {
	if threads <= 1 {
		return
	}
	p := newPool(threads)
	ip.pool = p
	runtime.AddCleanup(ip, func(p *pool) { p.stop() }, p)
}

// Close stops the interpreter's helper goroutines (Options.Threads > 1) at once rather than
// when the garbage collector finds it unreachable. The Interpreter must not be used after.
func (ip *Interpreter) Close() {
	if ip.pool != nil {
		ip.pool.stop()
		ip.pool = nil
	}
}

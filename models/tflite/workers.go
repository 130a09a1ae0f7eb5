package tflite

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
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
type pool struct {
	start   []chan struct{} // one per helper; closed by stop
	wg      sync.WaitGroup
	stopped sync.Once

	// Set by run before the helpers are woken and read by them until wg.Done.
	task  Task
	parts int64
	next  atomic.Int64
	fault atomic.Value // the first panic of a helper, as a string
}

func newPool(threads int) *pool {
	p := &pool{start: make([]chan struct{}, threads-1)}
	for i := range p.start {
		p.start[i] = make(chan struct{}, 1)
		go p.helper(i+1, p.start[i])
	}
	return p
}

// helper runs parts for each job it is woken for, until its channel is closed.
func (p *pool) helper(worker int, start <-chan struct{}) {
	for range start {
		func() {
			defer func() {
				if r := recover(); r != nil {
					p.fault.CompareAndSwap(nil, fmt.Sprint(r))
					p.next.Store(p.parts) // the others stop taking parts
				}
				p.wg.Done()
			}()
			p.drain(worker)
		}()
	}
}

func (p *pool) drain(worker int) {
	for {
		i := p.next.Add(1) - 1
		if i >= p.parts {
			return
		}
		p.task.RunPart(worker, int(i))
	}
}

// run does parts parts of t on the calling goroutine (worker 0) and the helpers, and returns
// when all are done. A panic in a helper is raised again here, where Invoke recovers it.
func (p *pool) run(parts int, t Task) {
	helpers := min(len(p.start), parts-1)
	p.task, p.parts = t, int64(parts)
	p.next.Store(0)
	p.wg.Add(helpers)
	for _, c := range p.start[:helpers] {
		c <- struct{}{}
	}
	p.drain(0)
	p.wg.Wait()
	p.task = nil
	if f := p.fault.Load(); f != nil {
		p.fault = atomic.Value{}
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

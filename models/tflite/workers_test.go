package tflite

import (
	"fmt"
	"sync/atomic"
	"testing"
)

// countTask counts how often each part runs and which workers ran parts.
type countTask struct {
	runs    []atomic.Int32
	workers []atomic.Int32
	panicAt int // part that panics, or -1
}

func (c *countTask) RunPart(worker, part int) {
	c.workers[worker].Add(1)
	c.runs[part].Add(1)
	if part == c.panicAt {
		panic(fmt.Sprintf("part %d", part))
	}
}

// TestPoolRunsEveryPartOnce runs many jobs of varied sizes back to back, so that helpers wake
// late, join jobs after the one they were woken for, or find the job over: every part must
// run exactly once per job, on a worker index below the pool's size.
func TestPoolRunsEveryPartOnce(t *testing.T) {
	t.Parallel()
	for _, threads := range []int{2, 3, 4} {
		p := newPool(threads)
		for job := range 3000 {
			parts := 1 + job*7919%37
			c := &countTask{runs: make([]atomic.Int32, parts), workers: make([]atomic.Int32, threads), panicAt: -1}
			p.run(parts, c)
			for i := range c.runs {
				if n := c.runs[i].Load(); n != 1 {
					t.Fatalf("%d threads, job %d: part %d of %d ran %d times", threads, job, i, parts, n)
				}
			}
		}
		p.stop()
	}
}

// TestPoolPanic checks that a panicking part is raised again by run, that the job's other
// parts are not all required to finish, and that the pool runs the next job in full.
func TestPoolPanic(t *testing.T) {
	t.Parallel()
	p := newPool(2)
	defer p.stop()
	for job := range 200 {
		c := &countTask{runs: make([]atomic.Int32, 8), workers: make([]atomic.Int32, 2), panicAt: job % 8}
		got := func() (r any) {
			defer func() { r = recover() }()
			p.run(8, c)
			return nil
		}()
		if want := fmt.Sprintf("part %d", job%8); fmt.Sprint(got) != want {
			t.Fatalf("job %d: run raised %v, want %q", job, got, want)
		}
		ok := &countTask{runs: make([]atomic.Int32, 8), workers: make([]atomic.Int32, 2), panicAt: -1}
		p.run(8, ok)
		for i := range ok.runs {
			if n := ok.runs[i].Load(); n != 1 {
				t.Fatalf("after job %d's panic: part %d ran %d times", job, i, n)
			}
		}
	}
}

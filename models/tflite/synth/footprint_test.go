package synth

import (
	"os"
	"runtime"
	"runtime/pprof"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
)

// TestInterpreterFootprint checks issue 14's memory target on the interpreter's side: an
// interpreter of the 96×96 MobileNet v2 the agent's footprint test runs, built as the agent
// builds it (Options.DropPacked), must hold no more live heap than the model file plus its
// arena once the caller has dropped the file's bytes. The figure is the growth of the heap's
// live bytes (HeapAlloc right after a collection) over a baseline taken with the file held,
// plus the file's length: what the interpreter and the Model keep.
//
// It runs on whichever kernel path the process chose (OUTPOST_PORTABLE=1 and
// OUTPOST_NO_DOTPROD=1 select the others; make test-kernels runs it as armv7 under qemu);
// docs/performance.md lists what each holds. The bound has no slack: every path holds 2-5 %
// less than it.
//
// OUTPOST_FOOTPRINT_PROFILE=file writes a heap profile (every allocation sampled) taken while
// the interpreter is held: go tool pprof -sample_index=inuse_space file.
func TestInterpreterFootprint(t *testing.T) {
	prof := os.Getenv("OUTPOST_FOOTPRINT_PROFILE")
	if prof != "" {
		defer func(r int) { runtime.MemProfileRate = r }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1
	}
	data, err := MobileNetV2Int8(MobileNetV2{Input: 96, Alpha: 1, Classes: 300, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	file := len(data)
	before, beforeSpans := liveHeap()
	m, err := tflite.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	data = nil
	consts := m.ConstBytes()
	ip, err := tflite.NewInterpreter(m, kernels.Builtins(), tflite.Options{DropPacked: true})
	if err != nil {
		t.Fatal(err)
	}
	m = nil
	in := ip.Input(0).Int8()
	for i := range in {
		in[i] = int8(i * 7919)
	}
	if err := ip.Invoke(); err != nil {
		t.Fatal(err)
	}
	after, afterSpans := liveHeap()
	held := int(after) - int(before) + file
	arena := ip.ArenaBytes()
	limit := file + arena
	t.Logf("path %s: held %d bytes = arena %d + %d other (the model's constants are %d bytes, its file %d); limit %d (%.3f of it)",
		kernels.KernelPath(), held, arena, held-arena, consts, file, limit, float64(held)/float64(limit))
	if held > limit {
		t.Errorf("path %s: the interpreter holds %d bytes, more than its bound %d (file %d, arena %d)", kernels.KernelPath(), held, limit, file, arena)
	}
	if prof != "" {
		f, err := os.Create(prof)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	// Not checked: spans also hold start-up garbage (the parse, the dropped scales and biases)
	// beside the interpreter's objects, and how much depends on what ran before in the process.
	t.Logf("heap in use (whole spans): grew by %d bytes, %d with the file's (%.3f of the limit)", int(afterSpans)-int(beforeSpans),
		int(afterSpans)-int(beforeSpans)+file, float64(int(afterSpans)-int(beforeSpans)+file)/float64(limit))
	runtime.KeepAlive(ip)
	ip.Close()
}

// liveHeap is the heap's live bytes after a full collection, and its bytes in spans in use.
func liveHeap() (live, spans uint64) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.HeapInuse
}

package main

import (
	"bufio"
	"cmp"
	"fmt"
	"math"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/tflite/schema"
)

// `outpost model bench`: time Invoke on one model with the pure-Go interpreter, single
// threaded, and print one JSON object, so that scripts/bench-vs-oracle can set it beside the
// official runtime's `--bench` figures.

type benchFlags struct {
	n, warmup, threads int
	portable, perOp    bool
	seed               int64
}

func newModelBenchCmd() *cobra.Command {
	var f benchFlags
	c := &cobra.Command{
		Use:   "bench MODEL.tflite",
		Short: "Time Invoke on a model and print median latency, allocations, MACs and the kernel path as JSON",
		Long: `Time the pure-Go interpreter on a model: --warmup untimed invocations, then --n timed ones,
inputs filled once from the oracle's xorshift32 stream (--random, default 1). Prints one JSON
object: median_ms, p90_ms, allocs_per_invoke, arena_bytes, macs (multiply-accumulates of one
inference, counted per op from the prepared shapes), gmacs (MACs per second / 1e9 at the
median), cpu_ms (median CPU time per Invoke of the calling thread, Linux; with --threads above 1 the
helpers' time is not in it) and kernels (the int8 convolution path: "avx2+avxvnni", "avx2+avx512vnni" or "avx2" on amd64, "neon-i8mm", "neon-dotprod" or "neon" on arm64, or "portable"). --portable, or
OUTPOST_PORTABLE=1 in the environment, forces the pure-Go kernels.
--per-op profiles the main subgraph op by op, in Invokes of their own after the timed ones
(so the figures above are not affected): "ops" lists every op in execution order (index, op,
output_shape, macs, median_us over those Invokes, share of the ops' total), "op_types" sums
them by op, slowest first. An IF or WHILE op's time includes its subgraphs.
Exit codes: 0 ok, 1 usage error, 2 model not loadable, 3 invoke failed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return benchModel(cmd, args[0], f)
		},
	}
	c.Flags().IntVar(&f.n, "n", 300, "timed invocations")
	c.Flags().IntVar(&f.warmup, "warmup", 30, "untimed invocations first")
	c.Flags().IntVar(&f.threads, "threads", 1, "goroutines per Invoke for the convolution and matrix loops (1 to 64; results do not depend on it)")
	c.Flags().BoolVar(&f.portable, "portable", false, "force the pure-Go kernels (as OUTPOST_PORTABLE=1)")
	c.Flags().Int64Var(&f.seed, "random", 1, "seed of the xorshift32 input stream")
	c.Flags().BoolVar(&f.perOp, "per-op", false, fmt.Sprintf("also time each op, in up to %d more Invokes after the timed ones, and add \"ops\" and \"op_types\"", maxPerOpRuns))
	return c
}

// benchReport is the JSON printed by `model bench`.
type benchReport struct {
	Model           string      `json:"model"`
	Runtime         runtimeJSON `json:"runtime"`
	GOARCH          string      `json:"goarch"`
	Kernels         string      `json:"kernels"`
	Threads         int         `json:"threads"`
	N               int         `json:"n"`
	Warmup          int         `json:"warmup"`
	MedianMS        float64     `json:"median_ms"`
	P90MS           float64     `json:"p90_ms"`
	MinMS           float64     `json:"min_ms"`
	MeanMS          float64     `json:"mean_ms"`
	CPUMS           *float64    `json:"cpu_ms,omitempty"`
	AllocsPerInvoke float64     `json:"allocs_per_invoke"`
	ArenaBytes      int         `json:"arena_bytes"`
	MACs            int64       `json:"macs"`
	GMACs           float64     `json:"gmacs"`
	// With --per-op.
	Ops     []opProfile     `json:"ops,omitempty"`
	OpTypes []opTypeProfile `json:"op_types,omitempty"`
}

// opProfile is one op's line of `model bench --per-op`.
type opProfile struct {
	Index       int     `json:"index"`
	Op          string  `json:"op"`
	OutputShape []int   `json:"output_shape"`
	MACs        int64   `json:"macs"`
	MedianUS    float64 `json:"median_us"`
	Share       float64 `json:"share"`
}

// opTypeProfile sums the ops of one kind: their median times, MACs and share.
type opTypeProfile struct {
	Op       string  `json:"op"`
	Count    int     `json:"count"`
	MACs     int64   `json:"macs"`
	MedianUS float64 `json:"median_us"`
	Share    float64 `json:"share"`
}

// maxPerOpRuns bounds the Invokes of --per-op (and the node times it keeps, 8 bytes a node
// and an Invoke).
const maxPerOpRuns = 1000

func benchModel(cmd *cobra.Command, path string, f benchFlags) error {
	switch {
	case f.n < 1 || f.n > 1_000_000:
		return usageErr("--n %d, want 1 to 1000000", f.n)
	case f.warmup < 0 || f.warmup > 1_000_000:
		return usageErr("--warmup %d, want 0 to 1000000", f.warmup)
	case f.threads < 1 || f.threads > 64:
		return usageErr("--threads %d, want 1 to 64", f.threads)
	case f.seed < 0 || f.seed > 1<<32-1:
		return usageErr("--random %d, want 0 to 2^32-1", f.seed)
	}
	m, err := loadModelFile(path)
	if err != nil {
		return err
	}
	if f.portable {
		// The kernels choose their path in Prepare, so this must precede NewInterpreter.
		defer kernels.SetPortable(kernels.SetPortable(true))
	}
	ip, err := tflite.NewInterpreter(m, kernels.Builtins(), tflite.Options{Threads: f.threads})
	if err != nil {
		return &exitError{code: exitLoad, err: fmt.Errorf("%s: %w", path, err)}
	}
	defer ip.Close()
	inputs := make([]*tensor.Tensor, ip.NumInputs())
	for i := range inputs {
		if inputs[i] = ip.Input(i); !ioDType(inputs[i].DType()) {
			return &exitError{code: exitLoad, err: fmt.Errorf("input %d %q: dtype %s cannot be filled", i, inputs[i].Name(), inputs[i].DType())}
		}
	}
	seed := uint32(f.seed)
	if err := fillInputs(inputs, nil, &seed); err != nil {
		return usageErr("%w", err)
	}
	// The arena may reuse an input's memory once its readers ran, so every Invoke gets the
	// inputs copied back first, outside the timed part, as the oracle's bench keeps its inputs.
	saved := make([][]byte, len(inputs))
	for i, t := range inputs {
		saved[i] = slices.Clone(t.Bytes())
	}
	restore := func() {
		for i, t := range inputs {
			copy(t.Bytes(), saved[i])
		}
	}
	r := benchReport{Model: filepath.Base(path), Runtime: runtimeJSON{Package: runtimeLabel, Version: version},
		GOARCH: runtime.GOARCH, Kernels: kernels.KernelPath(), Threads: f.threads, N: f.n, Warmup: f.warmup,
		ArenaBytes: ip.ArenaBytes(), MACs: countMACs(m, ip)}
	for i := 0; i < f.warmup; i++ {
		restore()
		if err := ip.Invoke(); err != nil {
			return &exitError{code: exitInvoke, err: fmt.Errorf("invoke: %w", err)}
		}
	}
	laps := make([]time.Duration, f.n)
	cpu := make([]int64, f.n)
	cpuOK := true
	unlock := lockThread()
	for i := range laps {
		restore()
		c0, ok0 := threadCPU()
		start := time.Now()
		err := ip.Invoke()
		laps[i] = time.Since(start)
		c1, ok1 := threadCPU()
		cpu[i], cpuOK = c1-c0, cpuOK && ok0 && ok1
		if err != nil {
			unlock()
			return &exitError{code: exitInvoke, err: fmt.Errorf("invoke: %w", err)}
		}
	}
	unlock()
	// Allocations are counted in a loop of their own, of at least 50 Invokes, so that neither
	// the timing calls nor a stray runtime allocation in a short run (5 Invokes: one stray
	// allocation read as 1 per Invoke) decide the figure. Whole allocations per Invoke,
	// rounded down as testing.AllocsPerRun does.
	na := max(f.n, 50)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range na {
		restore()
		if err := ip.Invoke(); err != nil {
			return &exitError{code: exitInvoke, err: fmt.Errorf("invoke: %w", err)}
		}
	}
	runtime.ReadMemStats(&after)
	r.AllocsPerInvoke = float64((after.Mallocs - before.Mallocs) / uint64(na))
	var total time.Duration
	for _, d := range laps {
		total += d
	}
	slices.Sort(laps)
	ms := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }
	r.MedianMS = ms(laps[len(laps)/2])
	r.P90MS = ms(laps[min(len(laps)-1, len(laps)*9/10)])
	r.MinMS = ms(laps[0])
	r.MeanMS = ms(total) / float64(f.n)
	if cpuOK {
		// The thread's CPU time per Invoke leaves out time spent waiting for a core, which
		// on a loaded machine dominates the wall-clock spread.
		slices.Sort(cpu)
		v := float64(cpu[len(cpu)/2]) / 1e6
		r.CPUMS = &v
	}
	if r.MedianMS > 0 {
		r.GMACs = float64(r.MACs) / (r.MedianMS / 1e3) / 1e9
	}
	if f.perOp {
		// Node times per Invoke, so that each op gets its own median.
		runs, nodes := min(f.n, maxPerOpRuns), ip.NumNodes()
		per := make([][]time.Duration, nodes)
		for i := range per {
			per[i] = make([]time.Duration, runs)
		}
		times := make([]time.Duration, nodes)
		unlock := lockThread()
		for k := range runs {
			restore()
			clear(times)
			if err := ip.InvokeTimed(times); err != nil {
				unlock()
				return &exitError{code: exitInvoke, err: fmt.Errorf("invoke: %w", err)}
			}
			for i, d := range times {
				per[i][k] = d
			}
		}
		unlock()
		r.Ops, r.OpTypes = opProfiles(m, ip, per)
	}
	out := bufio.NewWriter(cmd.OutOrStdout())
	defer out.Flush()
	return writeJSONLine(out, r)
}

// opProfiles turns per-node times (per[node][invoke]) into the ops' medians and shares, and
// sums them by op type, slowest first.
func opProfiles(m *tflite.Model, ip *tflite.Interpreter, per [][]time.Duration) ([]opProfile, []opTypeProfile) {
	ops := make([]opProfile, len(per))
	var total float64
	for i, ts := range per {
		op := &m.Subgraphs[0].Operators[i]
		shape := []int{}
		if len(op.Outputs) > 0 {
			if t := ip.Tensor(op.Outputs[0]); t != nil {
				shape = append(shape, t.Shape()...)
			}
		}
		slices.Sort(ts)
		us := float64(ts[len(ts)/2].Nanoseconds()) / 1e3
		ops[i] = opProfile{Index: i, Op: op.Op.Name(), OutputShape: shape, MACs: opMACs(op, ip), MedianUS: us}
		total += us
	}
	byType := map[string]int{} // index in types
	var types []opTypeProfile
	for i := range ops {
		if total > 0 {
			ops[i].Share = ops[i].MedianUS / total
		}
		j, ok := byType[ops[i].Op]
		if !ok {
			j = len(types)
			byType[ops[i].Op] = j
			types = append(types, opTypeProfile{Op: ops[i].Op})
		}
		t := &types[j]
		t.Count++
		t.MACs += ops[i].MACs
		t.MedianUS += ops[i].MedianUS
		t.Share += ops[i].Share
	}
	// Nanoseconds and four digits of share are all the clock and the noise can tell.
	for i := range ops {
		ops[i].MedianUS, ops[i].Share = round(ops[i].MedianUS, 1e3), round(ops[i].Share, 1e4)
	}
	for i := range types {
		types[i].MedianUS, types[i].Share = round(types[i].MedianUS, 1e3), round(types[i].Share, 1e4)
	}
	slices.SortStableFunc(types, func(a, b opTypeProfile) int { return cmp.Compare(b.MedianUS, a.MedianUS) })
	return ops, types
}

func round(x, scale float64) float64 { return math.Round(x*scale) / scale }

// countMACs adds up the multiply-accumulates of one inference of the main subgraph (opMACs).
func countMACs(m *tflite.Model, ip *tflite.Interpreter) int64 {
	var total int64
	for i := range m.Subgraphs[0].Operators {
		total += opMACs(&m.Subgraphs[0].Operators[i], ip)
	}
	return total
}

// opMACs is the multiply-accumulates of one op of the main subgraph, from the prepared tensor
// shapes: CONV_2D out × FH·FW·C_in, DEPTHWISE_CONV_2D out × FH·FW, TRANSPOSE_CONV in ×
// FH·FW·C_out, FULLY_CONNECTED out × depth, BATCH_MATMUL out × K, and the weight matrices of
// SVDF and the LSTM times the rows they multiply. Other ops count 0.
func opMACs(op *tflite.Operator, ip *tflite.Interpreter) int64 {
	shape := func(i int) []int {
		if t := ip.Tensor(i); i >= 0 && t != nil {
			return t.Shape()
		}
		return nil
	}
	numel := func(s []int) int64 {
		if s == nil {
			return 0
		}
		n := int64(1)
		for _, d := range s {
			n *= int64(d)
		}
		return n
	}
	in := func(k int) []int {
		if k >= len(op.Inputs) {
			return nil
		}
		return shape(op.Inputs[k])
	}
	if len(op.Outputs) == 0 {
		return 0
	}
	out := numel(shape(op.Outputs[0]))
	switch op.Op.Builtin {
	case schema.OpConv2D:
		if w := in(1); len(w) == 4 {
			return out * int64(w[1]*w[2]*w[3])
		}
	case schema.OpDepthwiseConv2D:
		if w := in(1); len(w) == 4 {
			return out * int64(w[1]*w[2])
		}
	case schema.OpTransposeConv:
		if w := in(1); len(w) == 4 {
			return numel(in(2)) * int64(w[0]*w[1]*w[2])
		}
	case schema.OpFullyConnected:
		if w := in(1); len(w) == 2 {
			return out * int64(w[1])
		}
	case schema.OpBatchMatmul:
		if a := in(0); len(a) >= 2 {
			k := a[len(a)-1]
			if o, ok := op.Options.(*tflite.BatchMatMulOptions); ok && o.AdjX {
				k = a[len(a)-2]
			}
			return out * int64(k)
		}
	case schema.OpSvdf, schema.OpUnidirectionalSequenceLstm:
		// Each weight matrix [units, n] multiplies every row (batch × time) of its input.
		x := in(0)
		if len(x) < 2 {
			return 0
		}
		rows := numel(x) / int64(x[len(x)-1])
		last := 3 // SVDF: weights_feature, weights_time
		if op.Op.Builtin == schema.OpUnidirectionalSequenceLstm {
			last = 9 // the 8 input and recurrent weight matrices
		}
		var total int64
		for k := 1; k < last; k++ {
			total += rows * numel(in(k))
		}
		return total
	}
	return 0
}

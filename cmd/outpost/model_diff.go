package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
)

// Layer-by-layer debugging: `model run --outputs` exposes intermediate tensors the way the
// oracle's --outputs does, and `model diff` reruns a model on the inputs of a recorded run
// (the oracle's, or another `model run`'s) and reports, tensor by tensor in execution order,
// how far ours is from it and which op departs first.

var digitsRE = regexp.MustCompile(`^[0-9]+$`)

// outputList resolves an --outputs spec against subgraph 0 with the oracle's semantics:
// "all" is the model's outputs followed by every other non-constant tensor (in index order;
// ours skips tensors without printable values, such as resource handles, which the oracle
// would refuse); "+LIST" keeps the model's outputs first; "LIST" replaces them. LIST items are
// tensor indices or names, comma-separated; duplicates are dropped.
func outputList(m *tflite.Model, spec string) ([]int, error) {
	sg := m.Subgraphs[0]
	spec = strings.TrimSpace(spec)
	var list []int
	seen := map[int]bool{}
	add := func(i int) {
		if !seen[i] {
			seen[i] = true
			list = append(list, i)
		}
	}
	if spec == "all" {
		for _, o := range sg.Outputs {
			add(o)
		}
		for i := range sg.Tensors {
			t := &sg.Tensors[i]
			if !t.Constant() && ioDType(t.DType) {
				add(i)
			}
		}
		return list, nil
	}
	if rest, ok := strings.CutPrefix(spec, "+"); ok {
		for _, o := range sg.Outputs {
			add(o)
		}
		spec = rest
	}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		idx := -1
		if digitsRE.MatchString(item) {
			if _, err := fmt.Sscan(item, &idx); err != nil || idx >= len(sg.Tensors) {
				idx = -1
			}
		} else {
			for i := range sg.Tensors {
				if sg.Tensors[i].Name == item {
					idx = i
					break
				}
			}
		}
		if idx < 0 {
			return nil, fmt.Errorf("--outputs: no tensor %q in subgraph 0", item)
		}
		add(idx)
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("--outputs: empty list")
	}
	return list, nil
}

// ---- diff ----

type diffFlags struct {
	against string
	lsb     float64
	rel     float64
	isolate bool
}

func newModelDiffCmd() *cobra.Command {
	var f diffFlags
	c := &cobra.Command{
		Use:   "diff MODEL.tflite --against RUN.json",
		Short: "Compare a model's tensors, layer by layer, with a recorded run (the official runtime's or ours)",
		Long: `Rerun MODEL with the inputs recorded in RUN.json and compare every tensor that RUN.json
lists among its outputs. RUN.json is a single run of the TFLite oracle or of 'outpost model run'
in the same format; record intermediate tensors with --outputs all, e.g.

  node tflite-oracle.js M.tflite --random 1 --outputs all > oracle.json
  outpost model diff M.tflite --against oracle.json

For every tensor, in execution order, it prints the maximum and mean |difference|: in LSB
(quantized units) for integer tensors, and for floats as relative error |a-b|/(max(|a|,|b|)+0.1),
so that 1e-5 is the float tolerance of docs/tflite.md (1e-5 relative plus 1e-6 absolute). It then
names the first op whose output departs (beyond --lsb or --rel) while all its inputs agree: the
op to look at.

With --isolate every op is fed the recorded values of its inputs (where RUN.json has them)
instead of ours, so each row measures that op alone and differences do not accumulate: the
per-layer proof of a whole model in one command.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.against == "" {
				return usageErr("--against RUN.json is required")
			}
			if f.lsb < 0 || f.rel < 0 || math.IsNaN(f.lsb) || math.IsNaN(f.rel) {
				return usageErr("--lsb and --rel must be >= 0")
			}
			return diffModel(cmd.OutOrStdout(), args[0], f)
		},
	}
	c.Flags().StringVar(&f.against, "against", "", "JSON of a single run with inputs and the tensors to compare as outputs")
	c.Flags().Float64Var(&f.lsb, "lsb", 0, "integer tensors: largest |difference| in LSB that still agrees")
	c.Flags().Float64Var(&f.rel, "rel", 1e-5, "float tensors: largest relative error that still agrees")
	c.Flags().BoolVar(&f.isolate, "isolate", false, "feed every op the recorded values of its inputs, measuring each op alone")
	return c
}

// recordedRun is the part of a run's JSON that diff reads.
type recordedRun struct {
	Header  bool             `json:"header"`
	Error   string           `json:"error"`
	Inputs  []recordedTensor `json:"inputs"`
	Outputs []recordedTensor `json:"outputs"`
}

type recordedTensor struct {
	Position int    `json:"position"`
	Tensor   int    `json:"tensor"`
	Name     string `json:"name"`
	DType    string `json:"dtype"`
	Shape    []int  `json:"shape"`
	Values   []any  `json:"values"`
}

// relFloor makes the float relative error |a-b|/(max(|a|,|b|)+relFloor) equal the contract's
// bound (RelTol relative plus AbsTol absolute) at RelTol: AbsTol/RelTol = 1e-6/1e-5.
const relFloor = 0.1

// tensorDiff is the comparison of one tensor.
type tensorDiff struct {
	tensor    int
	name      string
	dtype     string
	n, bad    int
	max, mean float64
	float     bool
	mismatch  string // dtype/shape/count disagreement, if any
	departs   bool
}

func (d *tensorDiff) unit() string {
	if d.float {
		return "rel"
	}
	return "LSB"
}

func diffModel(w io.Writer, path string, f diffFlags) error {
	raw, err := os.ReadFile(f.against)
	if err != nil {
		return usageErr("read %s: %w", f.against, err)
	}
	var rec recordedRun
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&rec); err != nil {
		return usageErr("%s: parse JSON: %w", f.against, err)
	}
	switch {
	case rec.Header:
		return usageErr("%s: a batch (JSON Lines) run; diff needs a single run", f.against)
	case rec.Error != "":
		return usageErr("%s: the recorded run failed: %s", f.against, rec.Error)
	case len(rec.Outputs) == 0:
		return usageErr("%s: no outputs to compare", f.against)
	}
	m, err := loadModelFile(path)
	if err != nil {
		return err
	}
	sg := m.Subgraphs[0]
	if len(rec.Inputs) != len(sg.Inputs) {
		return usageErr("%s: %d inputs recorded, the model has %d (record the run without --no-inputs)", f.against, len(rec.Inputs), len(sg.Inputs))
	}
	list := make([]int, len(rec.Outputs))
	for i, o := range rec.Outputs {
		if o.Tensor < 0 || o.Tensor >= len(sg.Tensors) || sg.Tensors[o.Tensor].Name != o.Name {
			return usageErr("%s: output %d is tensor %d %q, which the model does not have (a run of another model?)", f.against, i, o.Tensor, o.Name)
		}
		list[i] = o.Tensor
	}
	if m, err = m.WithOutputs(list); err != nil {
		return usageErr("%w", err)
	}
	ip, err := tflite.NewInterpreter(m, kernels.Builtins(), tflite.Options{})
	if err != nil {
		return &exitError{code: exitLoad, err: err}
	}
	for _, in := range rec.Inputs {
		t := ip.Input(in.Position)
		if t == nil {
			return usageErr("%s: input position %d out of range", f.against, in.Position)
		}
		if !ioDType(t.DType()) {
			return usageErr("input %d %q: dtype %s cannot be set from JSON", in.Position, t.Name(), t.DType())
		}
		if err := (inputSpec{values: in.Values}).set(t); err != nil {
			return usageErr("%s: %w", f.against, err)
		}
	}
	// Every recorded tensor is an output, so it keeps its own memory: compare each op's
	// outputs right after it runs (before --isolate overwrites them as later ops' inputs).
	pos := map[int]int{}
	for p, o := range rec.Outputs {
		pos[o.Tensor] = p
	}
	diffs := map[int]*tensorDiff{}
	compare := func(t int) {
		if p, ok := pos[t]; ok && diffs[t] == nil {
			diffs[t] = compareTensor(ip.Output(p), rec.Outputs[p], f)
		}
	}
	for _, t := range sg.Inputs {
		compare(t)
	}
	for i, op := range sg.Operators {
		if f.isolate {
			for _, t := range op.Inputs {
				p, ok := pos[t]
				if !ok || t < 0 || sg.Tensors[t].Constant() {
					continue
				}
				if err := (inputSpec{values: rec.Outputs[p].Values}).set(ip.Output(p)); err != nil {
					return usageErr("%s: %w", f.against, err)
				}
			}
		}
		if err := ip.InvokeNode(i); err != nil {
			return &exitError{code: exitInvoke, err: err}
		}
		for _, t := range op.Outputs {
			compare(t)
		}
	}
	for t := range sg.Tensors {
		compare(t)
	}
	mode := ""
	if f.isolate {
		mode = ", each op fed the recorded inputs"
	}
	return printDiff(w, filepath.Base(path), filepath.Base(f.against)+mode, sg, diffs)
}

// compareTensor measures ours against the recorded tensor.
func compareTensor(got *tensor.Tensor, want recordedTensor, f diffFlags) *tensorDiff {
	d := &tensorDiff{tensor: want.Tensor, name: want.Name, dtype: want.DType,
		float: got.DType() == tensor.Float32 || got.DType() == tensor.Float64}
	switch {
	case got.DType().String() != want.DType:
		d.mismatch = fmt.Sprintf("dtype %s, recorded %s", got.DType(), want.DType)
	case want.Shape != nil && !equalShape(got.Shape(), want.Shape):
		d.mismatch = fmt.Sprintf("shape %v, recorded %v", got.Shape(), want.Shape)
	case got.NumElements() != len(want.Values):
		d.mismatch = fmt.Sprintf("%d elements, recorded %d", got.NumElements(), len(want.Values))
	}
	if d.mismatch != "" {
		d.departs = true
		return d
	}
	d.n = len(want.Values)
	sum := 0.0
	for i, v := range want.Values {
		b, err := decodeNumber(v)
		if err != nil {
			d.mismatch = fmt.Sprintf("recorded element %d: %v", i, err)
			d.departs = true
			return d
		}
		a := elementAt(got, i)
		var e float64
		switch {
		case a == b || math.IsNaN(a) && math.IsNaN(b):
		case math.IsNaN(a) || math.IsNaN(b) || math.IsInf(a, 0) || math.IsInf(b, 0):
			e = math.Inf(1)
		case d.float:
			e = math.Abs(a-b) / (math.Max(math.Abs(a), math.Abs(b)) + relFloor)
		default:
			e = math.Abs(a - b)
		}
		tol := f.lsb
		if d.float {
			tol = f.rel
		}
		if e > tol {
			d.bad++
		}
		d.max = math.Max(d.max, e)
		sum += e
	}
	if d.n > 0 {
		d.mean = sum / float64(d.n)
	}
	d.departs = d.bad > 0
	return d
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// elementAt reads element i of any printable tensor as float64.
func elementAt(t *tensor.Tensor, i int) float64 {
	switch t.DType() {
	case tensor.Float32:
		return float64(t.Float32()[i])
	case tensor.Float64:
		return t.Float64()[i]
	case tensor.Int8:
		return float64(t.Int8()[i])
	case tensor.Uint8:
		return float64(t.Uint8()[i])
	case tensor.Int16:
		return float64(t.Int16()[i])
	case tensor.Int32:
		return float64(t.Int32()[i])
	case tensor.Uint32:
		return float64(t.Uint32()[i])
	case tensor.Bool:
		return float64(t.Bool()[i] & 1)
	}
	return math.NaN()
}

// printDiff writes one row per compared tensor in execution order (graph inputs, then each
// op's outputs, then any other recorded tensor) and the verdict.
func printDiff(w io.Writer, model, against string, sg tflite.Subgraph, diffs map[int]*tensorDiff) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "model %s against %s: %d tensors compared\n\n", model, against, len(diffs))
	fmt.Fprintln(tw, "op\ttensor\tname\tdtype\tmax\tmean\tunit\tstatus")
	done := map[int]bool{}
	row := func(op string, d *tensorDiff) {
		done[d.tensor] = true
		status := "ok"
		switch {
		case d.mismatch != "":
			status = d.mismatch
		case d.departs:
			status = fmt.Sprintf("DIFF (%d of %d)", d.bad, d.n)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", op, d.tensor, d.name, d.dtype, fmtDiff(d.max, d.float), fmtDiff(d.mean, d.float), d.unit(), status)
	}
	for _, t := range sg.Inputs {
		if d, ok := diffs[t]; ok && !done[t] {
			row("input", d)
		}
	}
	first := -1
	var firstOut *tensorDiff
	for _, op := range sg.Operators {
		departs := false
		var out *tensorDiff
		for _, t := range op.Outputs {
			if d, ok := diffs[t]; ok && !done[t] {
				row(fmt.Sprintf("%d %s", op.Index, op.Op.Name()), d)
				if d.departs && !departs {
					departs, out = true, d
				}
			}
		}
		if !departs || first >= 0 {
			continue
		}
		inputsAgree := true
		for _, t := range op.Inputs {
			if d, ok := diffs[t]; ok && t >= 0 && d.departs {
				inputsAgree = false
			}
		}
		if inputsAgree {
			first, firstOut = op.Index, out
		}
	}
	for t := range sg.Tensors {
		if d, ok := diffs[t]; ok && !done[t] {
			row("-", d)
		}
	}
	fmt.Fprintln(tw)
	if err := tw.Flush(); err != nil {
		return err
	}
	var err error
	switch {
	case first >= 0:
		op := sg.Operators[first]
		what := firstOut.mismatch
		if what == "" {
			what = fmt.Sprintf("max %s %s, %d of %d elements beyond tolerance", fmtDiff(firstOut.max, firstOut.float), firstOut.unit(), firstOut.bad, firstOut.n)
		}
		_, err = fmt.Fprintf(w, "first departing op: op %d (%s), output tensor %d %q: %s; its compared inputs agree\n", first, op.Op, firstOut.tensor, firstOut.name, what)
	case anyDeparts(diffs):
		_, err = fmt.Fprintln(w, "tensors depart, but no op departs with agreeing inputs (a departing graph input, or the departure starts at a tensor that was not recorded)")
	default:
		_, err = fmt.Fprintln(w, "every compared tensor agrees within tolerance")
	}
	return err
}

func anyDeparts(diffs map[int]*tensorDiff) bool {
	for _, d := range diffs {
		if d.departs {
			return true
		}
	}
	return false
}

// fmtDiff prints integer differences plainly and relative errors with 3 significant digits.
func fmtDiff(v float64, float bool) string {
	if math.IsInf(v, 1) {
		return "inf"
	}
	if float {
		return fmt.Sprintf("%.3g", v)
	}
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3f", v)
}

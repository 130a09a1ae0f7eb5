package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
)

// `outpost model inspect|run`: look inside a .tflite file and run it with the pure-Go
// interpreter, printing JSON in the exact format of the TFLite reference oracle
// (../shared/oracle/README.md) so the two can be diffed.

func init() { register(newModelCmd) }

func newModelCmd() *cobra.Command {
	c := &cobra.Command{Use: "model", Short: "Inspect and run TFLite models with the built-in interpreter"}
	c.AddCommand(newModelInspectCmd(), newModelRunCmd(), newModelBenchCmd(), newModelDiffCmd())
	return c
}

// Exit codes of `model run`, the same as the oracle's.
const (
	exitUsage    = 1
	exitLoad     = 2
	exitInvoke   = 3
	runtimeLabel = "outpost-go-tflite"
)

func loadModelFile(path string) (*tflite.Model, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &exitError{code: exitUsage, err: fmt.Errorf("read model: %w", err)}
	}
	m, err := tflite.Load(data)
	if err != nil {
		return nil, &exitError{code: exitLoad, err: fmt.Errorf("%s: %w", path, err)}
	}
	return m, nil
}

// ---- inspect ----

type quantJSON struct {
	Scale              f32s    `json:"scale"`
	ZeroPoint          []int64 `json:"zero_point"`
	QuantizedDimension int     `json:"quantized_dimension"`
}

func quantOf(q *tensor.Quant) *quantJSON {
	if q == nil {
		return nil
	}
	return &quantJSON{Scale: q.Scale, ZeroPoint: q.ZeroPoint, QuantizedDimension: q.Dim}
}

// f32s marshals float32s as the shortest decimal of their exact float64 value, so that
// parsing as float64 and converting to float32 gives back the same bits.
type f32s []float32

func (v f32s) MarshalJSON() ([]byte, error) {
	var b []byte
	b = append(b, '[')
	for i, x := range v {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendFloat(b, float64(x))
	}
	return append(b, ']'), nil
}

func appendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	return appendJSNumber(b, f)
}

// appendJSNumber prints f with the shortest digits that round-trip (as strconv does) laid out
// the way JavaScript's Number.prototype.toString does, so our JSON is byte-identical to the
// oracle's (JS writes 1.4901161193847656e-7 where Go's 'g' writes …e-07; both parse the same).
func appendJSNumber(b []byte, f float64) []byte {
	if f == 0 {
		return append(b, '0') // JSON.stringify(-0) is "0" too
	}
	if f < 0 {
		b = append(b, '-')
		f = -f
	}
	e := strconv.FormatFloat(f, 'e', -1, 64) // d.ddde±XX
	mant, exp, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	x, _ := strconv.Atoi(exp)
	k, n := len(digits), x+1 // value = 0.digits × 10^n
	switch {
	case k <= n && n <= 21:
		b = append(b, digits...)
		for i := 0; i < n-k; i++ {
			b = append(b, '0')
		}
	case 0 < n && n <= 21:
		b = append(b, digits[:n]...)
		b = append(b, '.')
		b = append(b, digits[n:]...)
	case -6 < n && n <= 0:
		b = append(b, "0."...)
		for i := 0; i < -n; i++ {
			b = append(b, '0')
		}
		b = append(b, digits...)
	default:
		b = append(b, digits[0])
		if k > 1 {
			b = append(b, '.')
			b = append(b, digits[1:]...)
		}
		b = append(b, 'e')
		if n-1 >= 0 {
			b = append(b, '+')
		}
		b = strconv.AppendInt(b, int64(n-1), 10)
	}
	return b
}

type inspectTensor struct {
	Index        int        `json:"index"`
	Name         string     `json:"name"`
	DType        string     `json:"dtype"`
	Shape        []int      `json:"shape"`
	Quantization *quantJSON `json:"quantization"`
	Constant     bool       `json:"constant"`
	Variable     bool       `json:"variable,omitempty"`
	Bytes        int        `json:"bytes"`
}

type inspectOp struct {
	Index   int    `json:"index"`
	Op      string `json:"op"`
	Version int    `json:"version"`
	Inputs  []int  `json:"inputs"`
	Outputs []int  `json:"outputs"`
}

type inspectReport struct {
	Model            string          `json:"model"`
	Bytes            int             `json:"bytes"`
	SchemaVersion    uint32          `json:"schema_version"`
	Description      string          `json:"description"`
	Subgraphs        int             `json:"subgraphs"`
	OperatorCodes    []string        `json:"operator_codes"`
	Operators        []inspectOp     `json:"operators"`
	Inputs           []int           `json:"inputs"`
	Outputs          []int           `json:"outputs"`
	Tensors          []inspectTensor `json:"tensors"`
	ConstantBytes    int             `json:"constant_bytes"`
	ArenaBytes       *int            `json:"arena_bytes"`
	InterpreterError string          `json:"interpreter_error,omitempty"`
}

func newModelInspectCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "inspect MODEL.tflite",
		Short: "Show a model's operators, tensors, quantization and planned arena size",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return &exitError{code: exitUsage, err: fmt.Errorf("read model: %w", err)}
			}
			m, err := tflite.Load(data)
			if err != nil {
				return &exitError{code: exitLoad, err: fmt.Errorf("%s: %w", args[0], err)}
			}
			r := inspect(m, filepath.Base(args[0]), len(data))
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			return printInspect(cmd.OutOrStdout(), r)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of text")
	return c
}

func inspect(m *tflite.Model, name string, size int) inspectReport {
	sg := m.Subgraphs[0]
	r := inspectReport{Model: name, Bytes: size, SchemaVersion: m.Version, Description: m.Description,
		Subgraphs: len(m.Subgraphs), Inputs: sg.Inputs, Outputs: sg.Outputs, ConstantBytes: m.ConstBytes()}
	for _, o := range m.Ops() {
		r.OperatorCodes = append(r.OperatorCodes, o.String())
	}
	for _, op := range sg.Operators {
		r.Operators = append(r.Operators, inspectOp{Index: op.Index, Op: op.Op.Name(), Version: op.Op.Version, Inputs: op.Inputs, Outputs: op.Outputs})
	}
	for _, t := range sg.Tensors {
		r.Tensors = append(r.Tensors, inspectTensor{Index: t.Index, Name: t.Name, DType: t.DType.String(), Shape: t.Shape,
			Quantization: quantOf(t.Quant), Constant: t.Constant(), Variable: t.Variable, Bytes: tensor.ByteSize(t.DType, t.Shape)})
	}
	if ip, err := tflite.NewInterpreter(m, kernels.Builtins(), tflite.Options{}); err != nil {
		r.InterpreterError = err.Error()
	} else {
		n := ip.ArenaBytes()
		r.ArenaBytes = &n
	}
	return r
}

func printInspect(w io.Writer, r inspectReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "model:\t%s (%d bytes, schema v%d, %d subgraph(s))\n", r.Model, r.Bytes, r.SchemaVersion, r.Subgraphs)
	if r.Description != "" {
		fmt.Fprintf(tw, "description:\t%s\n", r.Description)
	}
	fmt.Fprintf(tw, "constants:\t%d bytes\n", r.ConstantBytes)
	if r.ArenaBytes != nil {
		fmt.Fprintf(tw, "arena:\t%d bytes\n", *r.ArenaBytes)
	} else {
		fmt.Fprintf(tw, "arena:\tnot planned: %s\n", r.InterpreterError)
	}
	fmt.Fprintf(tw, "op codes:\t%s\n", strings.Join(r.OperatorCodes, ", "))
	fmt.Fprintf(tw, "inputs:\t%v\noutputs:\t%v\n\nOPERATORS\nidx\top\tinputs\toutputs\n", r.Inputs, r.Outputs)
	for _, o := range r.Operators {
		fmt.Fprintf(tw, "%d\t%s v%d\t%v\t%v\n", o.Index, o.Op, o.Version, o.Inputs, o.Outputs)
	}
	fmt.Fprintf(tw, "\nTENSORS\nidx\tname\ttype\tshape\tbytes\tkind\tquantization\n")
	for _, t := range r.Tensors {
		kind := "activation"
		switch {
		case t.Constant:
			kind = "constant"
		case t.Variable:
			kind = "variable"
		}
		q := "-"
		if t.Quantization != nil {
			qs := t.Quantization
			if len(qs.Scale) == 1 {
				q = fmt.Sprintf("scale %g zp %d", qs.Scale[0], qs.ZeroPoint[0])
			} else {
				q = fmt.Sprintf("per-channel dim %d, %d scales", qs.QuantizedDimension, len(qs.Scale))
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%v\t%d\t%s\t%s\n", t.Index, t.Name, t.DType, t.Shape, t.Bytes, kind, q)
	}
	return tw.Flush()
}

// ---- run ----

type runFlags struct {
	input    string
	random   int64
	count    int
	noInputs bool
	outputs  string
}

func newModelRunCmd() *cobra.Command {
	var f runFlags
	c := &cobra.Command{
		Use:   "run MODEL.tflite",
		Short: "Run a model once (or --count times) and print inputs and outputs as the TFLite oracle does",
		Long: `Run a model with the pure-Go interpreter and print JSON in the format of the TFLite
reference oracle. Inputs are zero unless --input or --random sets them; --random SEED uses the
oracle's xorshift32 stream, so the same seed gives bit-identical inputs. --count N prints JSON
Lines: a header, then one line per case with seeds SEED..SEED+N-1.
Exit codes: 0 ok, 1 usage or input error, 2 model not loadable, 3 invoke failed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runModel(cmd, args[0], f, cmd.Flags().Changed("random"), cmd.Flags().Changed("count"))
		},
	}
	c.Flags().StringVar(&f.input, "input", "", "JSON file with input values (oracle input formats)")
	c.Flags().Int64Var(&f.random, "random", 0, "fill inputs from the xorshift32 stream with this seed (0..2^32-1)")
	c.Flags().IntVar(&f.count, "count", 0, "batch: run N cases with seeds SEED..SEED+N-1 (needs --random)")
	c.Flags().BoolVar(&f.noInputs, "no-inputs", false, "do not echo inputs")
	c.Flags().StringVar(&f.outputs, "outputs", "", `print these subgraph-0 tensors as the outputs: LIST (indices or names, comma-separated), +LIST (after the model's outputs) or "all" (every non-constant tensor), as the oracle's --outputs`)
	return c
}

type runTensor struct {
	Position     int             `json:"position"`
	Tensor       int             `json:"tensor"`
	Name         string          `json:"name"`
	DType        string          `json:"dtype"`
	Shape        []int           `json:"shape"`
	Quantization json.RawMessage `json:"quantization,omitempty"`
	Values       json.RawMessage `json:"values,omitempty"`
}

type runtimeJSON struct {
	Package string `json:"package"`
	Version string `json:"version"`
}

func usageErr(format string, a ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, a...)}
}

func runModel(cmd *cobra.Command, path string, f runFlags, haveSeed, haveCount bool) error {
	if haveCount && !haveSeed {
		return usageErr("--count needs --random SEED")
	}
	if haveSeed && (f.random < 0 || f.random > math.MaxUint32) {
		return usageErr("seed must be an integer in [0, 2^32)")
	}
	if haveCount && f.count < 0 {
		return usageErr("--count must be >= 0")
	}
	out := bufio.NewWriter(cmd.OutOrStdout())
	defer out.Flush()
	name := filepath.Base(path)
	rt := runtimeJSON{Package: runtimeLabel, Version: version}
	writeErr := func(code int, err error) error {
		line, _ := json.Marshal(struct {
			Model   string      `json:"model"`
			Error   string      `json:"error"`
			Runtime runtimeJSON `json:"runtime"`
		}{name, err.Error(), rt})
		out.Write(append(line, '\n'))
		return &exitError{code: code, err: err}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return usageErr("read model: %w", err)
	}
	m, err := tflite.Load(data)
	if err != nil {
		return writeErr(exitLoad, err)
	}
	if f.outputs != "" {
		list, err := outputList(m, f.outputs)
		if err != nil {
			return usageErr("%w", err)
		}
		if m, err = m.WithOutputs(list); err != nil {
			return usageErr("%w", err)
		}
	}
	ip, err := tflite.NewInterpreter(m, kernels.Builtins(), tflite.Options{})
	if err != nil {
		return writeErr(exitLoad, err)
	}
	for i := 0; i < ip.NumInputs(); i++ {
		if d := ip.Input(i).DType(); !ioDType(d) {
			return writeErr(exitLoad, fmt.Errorf("input %d %q: dtype %s cannot be set from JSON", i, ip.Input(i).Name(), d))
		}
	}
	for i := 0; i < ip.NumOutputs(); i++ {
		if d := ip.Output(i).DType(); !ioDType(d) {
			return writeErr(exitLoad, fmt.Errorf("output %d %q: dtype %s cannot be printed", i, ip.Output(i).Name(), d))
		}
	}
	inputs := make([]*tensor.Tensor, ip.NumInputs())
	for i := range inputs {
		inputs[i] = ip.Input(i)
	}
	given := map[int]inputSpec{}
	if f.input != "" {
		raw, err := os.ReadFile(f.input)
		if err != nil {
			return usageErr("read input: %w", err)
		}
		if given, err = parseInputSet(raw, inputs); err != nil {
			return usageErr("input %s: %w", f.input, err)
		}
	}
	sg := m.Subgraphs[0]
	describe := func(list []int, get func(int) *tensor.Tensor, withQuant, withValues bool) ([]runTensor, error) {
		ts := make([]runTensor, len(list))
		for pos, ti := range list {
			t := get(pos)
			// A rank-0 tensor prints "shape": [] as the oracle does, never null.
			shape := append([]int{}, t.Shape()...)
			ts[pos] = runTensor{Position: pos, Tensor: ti, Name: t.Name(), DType: t.DType().String(), Shape: shape}
			if withQuant {
				q, err := json.Marshal(quantOf(t.Quant()))
				if err != nil {
					return nil, err
				}
				ts[pos].Quantization = q
			}
			if withValues {
				ts[pos].Values = appendValues(nil, t)
			}
		}
		return ts, nil
	}
	var seed *uint32
	if haveSeed {
		s := uint32(f.random)
		seed = &s
	}
	if !haveCount {
		if err := fillInputs(inputs, given, seed); err != nil {
			return usageErr("%w", err)
		}
		var ins []runTensor
		if !f.noInputs {
			if ins, err = describe(sg.Inputs, ip.Input, true, true); err != nil {
				return err
			}
		}
		if err := ip.Invoke(); err != nil {
			return writeErr(exitInvoke, err)
		}
		outs, err := describe(sg.Outputs, ip.Output, true, true)
		if err != nil {
			return err
		}
		return writeJSONLine(out, struct {
			Model   string      `json:"model"`
			Runtime runtimeJSON `json:"runtime"`
			Seed    *uint32     `json:"seed"`
			Range   *string     `json:"range"`
			Inputs  []runTensor `json:"inputs,omitempty"`
			Outputs []runTensor `json:"outputs"`
		}{name, rt, seed, nil, ins, outs})
	}
	// Batch: header line, then one line per case; a failing case reports its error and the
	// batch goes on, as the oracle does.
	hin, _ := describe(sg.Inputs, ip.Input, true, false)
	hout, _ := describe(sg.Outputs, ip.Output, true, false)
	stateful := false
	for _, t := range m.Tensors() {
		stateful = stateful || t.Variable
	}
	if err := writeJSONLine(out, struct {
		Model     string      `json:"model"`
		Runtime   runtimeJSON `json:"runtime"`
		Header    bool        `json:"header"`
		Stateful  bool        `json:"stateful"`
		KeepState bool        `json:"keep_state"`
		Inputs    []runTensor `json:"inputs"`
		Outputs   []runTensor `json:"outputs"`
		Range     *string     `json:"range"`
	}{name, rt, true, stateful, false, hin, hout, nil}); err != nil {
		return err
	}
	for k := 0; k < f.count; k++ {
		if k > 0 {
			ip.ResetVariables()
		}
		s := uint32(f.random) + uint32(k)
		if err := fillInputs(inputs, given, &s); err != nil {
			return usageErr("%w", err)
		}
		line := struct {
			Case    int         `json:"case"`
			Seed    uint32      `json:"seed"`
			Inputs  []runTensor `json:"inputs,omitempty"`
			Outputs []runTensor `json:"outputs,omitempty"`
			Error   string      `json:"error,omitempty"`
		}{Case: k, Seed: s}
		if !f.noInputs {
			line.Inputs, _ = describe(sg.Inputs, ip.Input, false, true)
		}
		if err := ip.Invoke(); err != nil {
			line.Error = err.Error()
		} else {
			line.Outputs, _ = describe(sg.Outputs, ip.Output, false, true)
		}
		if err := writeJSONLine(out, line); err != nil {
			return err
		}
	}
	return nil
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode output: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// ioDType reports whether inputs and outputs of type d can be read from and printed as JSON
// (the oracle's set).
func ioDType(d tensor.DType) bool {
	switch d {
	case tensor.Float32, tensor.Float64, tensor.Int8, tensor.Uint8, tensor.Int16, tensor.Int32, tensor.Uint32, tensor.Bool:
		return true
	}
	return false
}

// appendValues renders a tensor's elements as a JSON array.
func appendValues(b []byte, t *tensor.Tensor) json.RawMessage {
	b = append(b, '[')
	n := t.NumElements()
	for i := 0; i < n; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		switch t.DType() {
		case tensor.Float32:
			b = appendFloat(b, float64(t.Float32()[i]))
		case tensor.Float64:
			b = appendFloat(b, t.Float64()[i])
		case tensor.Int8:
			b = strconv.AppendInt(b, int64(t.Int8()[i]), 10)
		case tensor.Uint8:
			b = strconv.AppendInt(b, int64(t.Uint8()[i]), 10)
		case tensor.Bool:
			b = strconv.AppendInt(b, int64(t.Bool()[i]&1), 10)
		case tensor.Int16:
			b = strconv.AppendInt(b, int64(t.Int16()[i]), 10)
		case tensor.Int32:
			b = strconv.AppendInt(b, int64(t.Int32()[i]), 10)
		case tensor.Uint32:
			b = strconv.AppendUint(b, uint64(t.Uint32()[i]), 10)
		}
	}
	return append(b, ']')
}

// xorshift32 is the oracle's documented input generator (../shared/oracle/README.md).
type xorshift32 struct{ s uint32 }

func fmix32(h uint32) uint32 {
	h ^= h >> 16
	h *= 0x85EBCA6B
	h ^= h >> 13
	h *= 0xC2B2AE35
	h ^= h >> 16
	return h
}

func newXorshift32(seed uint32) *xorshift32 {
	s := fmix32(seed)
	if s == 0 {
		s = 0x6D2B79F5
	}
	return &xorshift32{s}
}

func (r *xorshift32) next() uint32 {
	r.s ^= r.s << 13
	r.s ^= r.s >> 17
	r.s ^= r.s << 5
	return r.s
}

// drawInto stores the default-range value of draw u into element i of t.
func drawInto(t *tensor.Tensor, i int, u uint32) {
	switch t.DType() {
	case tensor.Float32:
		t.Float32()[i] = float32(-1 + 2*float64(u>>8)/16777216)
	case tensor.Float64:
		t.Float64()[i] = -1 + 2*float64(u>>8)/16777216
	case tensor.Int8:
		t.Int8()[i] = int8(uint8(u >> 24))
	case tensor.Uint8:
		t.Uint8()[i] = uint8(u >> 24)
	case tensor.Int16:
		t.Int16()[i] = int16(uint16(u >> 16))
	case tensor.Int32:
		t.Int32()[i] = int32(u)
	case tensor.Uint32:
		t.Uint32()[i] = u
	case tensor.Bool:
		t.Bool()[i] = uint8(u >> 31)
	}
}

// inputSpec is one input given in the --input file: numbers or raw little-endian bytes.
type inputSpec struct {
	values []any
	raw    []byte
}

// fillInputs sets every input as the oracle does: given values win; with a seed, every input
// element consumes one draw in input order, given or not; otherwise inputs are zero.
func fillInputs(inputs []*tensor.Tensor, given map[int]inputSpec, seed *uint32) error {
	var rng *xorshift32
	if seed != nil {
		rng = newXorshift32(*seed)
	}
	for pos, t := range inputs {
		spec, ok := given[pos]
		switch {
		case rng != nil:
			for i := 0; i < t.NumElements(); i++ {
				u := rng.next()
				if !ok {
					drawInto(t, i, u)
				}
			}
		case !ok:
			clear(t.Bytes())
		}
		if ok {
			if err := spec.set(t); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s inputSpec) set(t *tensor.Tensor) error {
	if s.raw != nil {
		if len(s.raw) != len(t.Bytes()) {
			return fmt.Errorf("input %q: got %d bytes, need %d", t.Name(), len(s.raw), len(t.Bytes()))
		}
		copy(t.Bytes(), s.raw)
		return nil
	}
	flat := flatten(nil, s.values)
	if len(flat) != t.NumElements() {
		return fmt.Errorf("input %q: got %d values, need %d (shape %v)", t.Name(), len(flat), t.NumElements(), t.Shape())
	}
	for i, v := range flat {
		f, err := decodeNumber(v)
		if err != nil {
			return fmt.Errorf("input %q element %d: %w", t.Name(), i, err)
		}
		if err := storeNumber(t, i, f); err != nil {
			return fmt.Errorf("input %q element %d: %w", t.Name(), i, err)
		}
	}
	return nil
}

func flatten(dst []any, v []any) []any {
	for _, e := range v {
		if a, ok := e.([]any); ok {
			dst = flatten(dst, a)
		} else {
			dst = append(dst, e)
		}
	}
	return dst
}

func decodeNumber(v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	case string:
		switch x {
		case "NaN":
			return math.NaN(), nil
		case "Infinity", "inf":
			return math.Inf(1), nil
		case "-Infinity", "-inf":
			return math.Inf(-1), nil
		}
		if f, err := strconv.ParseFloat(x, 64); err == nil {
			return f, nil
		}
	}
	return 0, fmt.Errorf("not a number: %v", v)
}

// storeNumber writes f into element i, refusing values the dtype cannot hold.
func storeNumber(t *tensor.Tensor, i int, f float64) error {
	isInt := t.DType() != tensor.Float32 && t.DType() != tensor.Float64
	if isInt && (f != math.Trunc(f) || math.IsNaN(f)) {
		return fmt.Errorf("%v is not an integer (tensor is %s)", f, t.DType())
	}
	inRange := func(lo, hi float64) error {
		if f < lo || f > hi {
			return fmt.Errorf("%v out of range for %s", f, t.DType())
		}
		return nil
	}
	var err error
	switch t.DType() {
	case tensor.Float32:
		t.Float32()[i] = float32(f)
	case tensor.Float64:
		t.Float64()[i] = f
	case tensor.Int8:
		if err = inRange(math.MinInt8, math.MaxInt8); err == nil {
			t.Int8()[i] = int8(f)
		}
	case tensor.Uint8:
		if err = inRange(0, math.MaxUint8); err == nil {
			t.Uint8()[i] = uint8(f)
		}
	case tensor.Int16:
		if err = inRange(math.MinInt16, math.MaxInt16); err == nil {
			t.Int16()[i] = int16(f)
		}
	case tensor.Int32:
		if err = inRange(math.MinInt32, math.MaxInt32); err == nil {
			t.Int32()[i] = int32(f)
		}
	case tensor.Uint32:
		if err = inRange(0, math.MaxUint32); err == nil {
			t.Uint32()[i] = uint32(f)
		}
	case tensor.Bool:
		if err = inRange(0, 1); err == nil {
			t.Bool()[i] = uint8(f)
		}
	default:
		err = fmt.Errorf("dtype %s not supported", t.DType())
	}
	return err
}

// parseInputSet accepts the oracle's input formats: {"inputs": [...]}, {"inputs": {name: v}},
// a bare array by position, or a bare {name: values} object (so oracle output replays).
func parseInputSet(raw []byte, inputs []*tensor.Tensor) (map[int]inputSpec, error) {
	var doc any
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("parse JSON: %w", err)
	}
	if obj, ok := doc.(map[string]any); ok {
		if in, ok := obj["inputs"]; ok {
			doc = in
		}
	}
	byName := func(name string) (int, error) {
		for i, t := range inputs {
			if t.Name() == name {
				return i, nil
			}
		}
		return 0, fmt.Errorf("no model input named %q", name)
	}
	out := map[int]inputSpec{}
	switch spec := doc.(type) {
	case []any:
		for i, e := range spec {
			pos := i
			obj, isObj := e.(map[string]any)
			if isObj && (obj["values"] != nil || obj["b64"] != nil) {
				if n, ok := obj["name"].(string); ok {
					p, err := byName(n)
					if err != nil {
						return nil, err
					}
					pos = p
				} else if p, ok := obj["position"].(float64); ok {
					pos = int(p)
				}
				s, err := specOf(obj)
				if err != nil {
					return nil, fmt.Errorf("input %d: %w", i, err)
				}
				out[pos] = s
				continue
			}
			out[pos] = inputSpec{values: asList(e)}
		}
	case map[string]any:
		for k, v := range spec {
			pos, err := byName(k)
			if err != nil {
				return nil, err
			}
			if obj, ok := v.(map[string]any); ok {
				s, err := specOf(obj)
				if err != nil {
					return nil, fmt.Errorf("input %q: %w", k, err)
				}
				out[pos] = s
			} else {
				out[pos] = inputSpec{values: asList(v)}
			}
		}
	default:
		return nil, errors.New("unrecognised input JSON (want an object or array)")
	}
	for p := range out {
		if p < 0 || p >= len(inputs) {
			return nil, fmt.Errorf("input position %d out of range [0,%d)", p, len(inputs))
		}
	}
	return out, nil
}

func asList(v any) []any {
	if a, ok := v.([]any); ok {
		return a
	}
	return []any{v}
}

func specOf(obj map[string]any) (inputSpec, error) {
	if b, ok := obj["b64"].(string); ok {
		raw, err := base64.StdEncoding.DecodeString(b)
		if err != nil {
			return inputSpec{}, fmt.Errorf("b64: %w", err)
		}
		return inputSpec{raw: raw}, nil
	}
	if v, ok := obj["values"]; ok {
		return inputSpec{values: asList(v)}, nil
	}
	return inputSpec{}, errors.New("entry has neither values nor b64")
}

package main

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
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

	"github.com/outpost-ml/outpost/internal/atomicfile"
	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
)

// `outpost keys gen` and `outpost models build|verify|inspect|baseline`: make signing keys,
// compute a manifest's training baseline and golden vectors, and build, verify and inspect
// signed model packages (models/bundle, docs/models.md).

func init() {
	register(newModelsCmd)
	register(newKeysCmd)
}

func newKeysCmd() *cobra.Command {
	c := &cobra.Command{Use: "keys", Short: "Manage ed25519 signing keys and the fleet's TUF trust"}
	var out string
	var force bool
	gen := &cobra.Command{
		Use:   "gen",
		Short: "Generate a signing key pair: NAME.key (private, mode 0600) and NAME.pub",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pub, priv, err := bundle.GenerateKey(nil)
			if err != nil {
				return err
			}
			privPEM, err := bundle.MarshalPrivateKey(priv)
			if err != nil {
				return err
			}
			pubPEM, err := bundle.MarshalPublicKey(pub)
			if err != nil {
				return err
			}
			keyPath, pubPath := out+".key", out+".pub"
			if !force {
				for _, p := range []string{keyPath, pubPath} {
					if _, err := os.Stat(p); err == nil {
						return fmt.Errorf("%s exists; refusing to overwrite a key (use --force)", p)
					}
				}
			}
			if err := writeFileAtomic(keyPath, privPEM, 0o600); err != nil {
				return err
			}
			if err := writeFileAtomic(pubPath, pubPEM, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (private: keep it secret) and %s (give it to devices and the controller)\nkey id %s\n", keyPath, pubPath, bundle.KeyID(pub))
			return nil
		},
	}
	gen.Flags().StringVar(&out, "out", "outpost-signing", "path prefix of the key files")
	gen.Flags().BoolVar(&force, "force", false, "overwrite existing key files")
	c.AddCommand(gen)
	c.AddCommand(newTrustCmds()...) // keys_trust.go: the fleet's TUF keys
	return c
}

func newModelsCmd() *cobra.Command {
	c := &cobra.Command{Use: "models", Short: "Build, verify and inspect signed model packages (.opkg)"}
	c.AddCommand(newModelsBuildCmd(), newModelsVerifyCmd(), newModelsInspectCmd(), newModelsBaselineCmd())
	c.AddCommand(newModelsRegistryCmds()...)
	return c
}

// writeFileAtomic writes data to a temporary file beside path and renames it into place, so
// a crash never leaves a half-written manifest, key or package.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	return atomicfile.Write(path, data, perm)
}

// readLimited reads a file refusing anything larger than limit bytes (checked before reading).
func readLimited(path, what string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s %s is %d bytes, limit %d", what, path, st.Size(), limit)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s %s is larger than %d bytes", what, path, limit)
	}
	return data, nil
}

const keyFileLimit = 64 << 10

func newModelsBuildCmd() *cobra.Command {
	var tfl, man, key, out string
	c := &cobra.Command{
		Use:   "build --tflite M.tflite --manifest M.json --key K.key [--out PKG]",
		Short: "Sign a model and its manifest into NAME-VERSION.opkg",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			model, err := readLimited(tfl, "model", bundle.DefaultMaxModelSize)
			if err != nil {
				return err
			}
			mjs, err := readLimited(man, "manifest", bundle.MaxManifestSize)
			if err != nil {
				return err
			}
			kpem, err := readLimited(key, "key", keyFileLimit)
			if err != nil {
				return err
			}
			priv, err := bundle.ParsePrivateKey(kpem)
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			if _, err := tflite.Load(model); err != nil {
				return fmt.Errorf("%s: %w", tfl, err)
			}
			pkg, err := bundle.Build(mjs, model, priv)
			if err != nil {
				return err
			}
			m, _ := bundle.DecodeManifest(mjs) // Build validated it
			if out == "" {
				out = bundle.FileName(m)
			}
			if err := writeFileAtomic(out, pkg, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d bytes): %s %s, model sha256 %s, signed by %s\n",
				out, len(pkg), m.Name, m.Version, m.SHA256, bundle.KeyID(priv.Public().(ed25519.PublicKey)))
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&tfl, "tflite", "", "the .tflite model (required)")
	f.StringVar(&man, "manifest", "", "the manifest JSON describing it (required)")
	f.StringVar(&key, "key", "", "PEM ed25519 private key `file` from outpost keys gen (required)")
	f.StringVar(&out, "out", "", "package file to write (default NAME-VERSION.opkg in the current directory)")
	for _, r := range []string{"tflite", "manifest", "key"} {
		_ = c.MarkFlagRequired(r)
	}
	return c
}

// readPackage reads a package file, checking its size before reading.
func readPackage(path string) (*bundle.Package, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read package: %w", err)
	}
	defer f.Close()
	p, err := bundle.Read(f, bundle.Limits{})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

func newModelsVerifyCmd() *cobra.Command {
	var pubPath string
	c := &cobra.Command{
		Use:   "verify PKG --pub K.pub",
		Short: "Check a package's layout, manifest, model digest and signature",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ppem, err := readLimited(pubPath, "public key", keyFileLimit)
			if err != nil {
				return err
			}
			pub, err := bundle.ParsePublicKey(ppem)
			if err != nil {
				return fmt.Errorf("%s: %w", pubPath, err)
			}
			p, err := readPackage(args[0])
			if err != nil {
				return err
			}
			if err := p.Verify(pub); err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK, %s %s signed by %s\n", args[0], p.Manifest.Name, p.Manifest.Version, bundle.KeyID(pub))
			return nil
		},
	}
	c.Flags().StringVar(&pubPath, "pub", "", "PEM ed25519 public key (required)")
	_ = c.MarkFlagRequired("pub")
	return c
}

func newModelsInspectCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "inspect PKG [--json]",
		Short: "Show a package's manifest (the signature is not checked: use verify)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := readPackage(args[0])
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				out := struct {
					Package   string          `json:"package"`
					Signature string          `json:"signature"`
					Verified  bool            `json:"signature_verified"`
					Manifest  json.RawMessage `json:"manifest"`
				}{args[0], hex.EncodeToString(p.Signature), false, p.ManifestJSON}
				b, err := json.MarshalIndent(out, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(w, "%s\n", b)
				return err
			}
			return printManifest(w, args[0], p)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the manifest and signature as JSON")
	return c
}

func printManifest(w io.Writer, path string, p *bundle.Package) error {
	m := p.Manifest
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, args...)) }
	row("package", "%s", path)
	row("signature", "not checked (run `outpost models verify %s --pub KEY.pub`)", path)
	row("name", "%s %s", m.Name, m.Version)
	if m.Description != "" {
		row("description", "%s", m.Description)
	}
	row("created", "%s", m.Created)
	row("model", "%s, %d bytes, sha256 %s", m.ModelFile, m.Size, m.SHA256)
	row("ops", "%s", strings.Join(m.Ops, ", "))
	row("min agent", "%s", m.MinAgentVersion)
	in := m.Input
	row("input", "sensor %s, channels %s, %g Hz, window %d, stride %d", in.Sensor, strings.Join(in.Channels, ","), in.SampleRateHz, in.Window, in.Stride)
	row("input tensor", "%s %v%s", in.DType, in.Shape, quantText(in.Quantization))
	for i, n := range in.Normalization {
		row("  normalize "+in.Channels[i], "(x - %.6g) / %.6g", n.Mean, n.Std)
	}
	out := m.Output
	row("output", "%s %s%s, labels %v, threshold %g", out.Kind, out.DType, quantText(out.Quantization), out.Labels, out.Threshold)
	mt := m.Metrics
	acc := fmt.Sprintf("accuracy %.4f", mt.Accuracy)
	if mt.FloatAccuracy > 0 {
		acc += fmt.Sprintf(" (float model %.4f)", mt.FloatAccuracy)
	}
	row("metrics", "%s, false positive rate %.4f, %d eval / %d train windows", acc, mt.FalsePositiveRate, mt.EvalWindows, mt.TrainWindows)
	b := m.Baseline
	row("baseline", "%d windows: %s", b.Windows, b.Source)
	for _, f := range append(append([]bundle.FeatureBaseline{}, b.Inputs...), b.Outputs...) {
		row("  "+f.Name, "mean %.4g std %.4g min %.4g max %.4g, %d bins", f.Mean, f.Std, f.Min, f.Max, len(f.Frequencies))
	}
	row("golden", "%d vectors, tolerance abs %g rel %g", len(m.Golden.Vectors), m.Golden.Tolerance.Abs, m.Golden.Tolerance.Rel)
	return tw.Flush()
}

func quantText(q *bundle.Quantization) string {
	if q == nil {
		return ""
	}
	return fmt.Sprintf(" (scale %g, zero point %d)", q.Scale, q.ZeroPoint)
}

// Golden tolerances written by `models baseline`: float32 runtimes differ in summation order;
// int8 runtimes (XNNPACK vs reference kernels) by a few LSB.
var (
	baselineFloatTol = bundle.Tolerance{Abs: 1e-5, Rel: 1e-4}
	baselineInt8Tol  = bundle.Tolerance{Abs: 3}
)

const maxCSVRows = 10_000_000

func newModelsBaselineCmd() *cobra.Command {
	var tfl, man, csvPath, out, source string
	var golden int
	c := &cobra.Command{
		Use:   "baseline --tflite M.tflite --manifest M.json --csv train.csv [--golden N] [--out M.json]",
		Short: "Compute a manifest's training baseline and golden vectors from a CSV of training inputs",
		Long: `Reads raw sensor samples (one row per instant, a header naming the columns; every
manifest input channel must be a column, other columns are ignored), cuts them into windows
with the manifest's window and stride, feeds each window (normalised and, for integer models,
quantized) through the built-in interpreter, and writes into the manifest: the training
baseline of every input channel and output value, N golden vectors spread over the data, and
the model's sha256, size, ops and tensor types. Everything else in the manifest is yours.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if golden < 1 {
				return fmt.Errorf("--golden %d: need at least one golden vector", golden)
			}
			model, err := readLimited(tfl, "model", bundle.DefaultMaxModelSize)
			if err != nil {
				return err
			}
			mjs, err := readLimited(man, "manifest", bundle.MaxManifestSize)
			if err != nil {
				return err
			}
			m, err := bundle.ParseManifest(mjs)
			if err != nil {
				return fmt.Errorf("%s: %w", man, err)
			}
			if source == "" {
				source = filepath.Base(csvPath)
			}
			if err := computeBaseline(m, model, csvPath, source, golden); err != nil {
				return err
			}
			js, err := m.Encode()
			if err != nil {
				return err
			}
			if out == "" {
				out = man
			}
			if err := writeFileAtomic(out, js, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: baseline of %d windows, %d golden vectors, model sha256 %s\n", out, m.Baseline.Windows, len(m.Golden.Vectors), m.SHA256)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&tfl, "tflite", "", "the .tflite model (required)")
	f.StringVar(&man, "manifest", "", "the manifest to complete (required; baseline, golden, sha256, size, ops and dtypes may be missing)")
	f.StringVar(&csvPath, "csv", "", "CSV of raw training inputs with a header row (required)")
	f.IntVar(&golden, "golden", 8, "number of golden vectors")
	f.StringVar(&out, "out", "", "where to write the manifest (default: overwrite --manifest)")
	f.StringVar(&source, "source", "", "text describing the training data (default: the CSV file name)")
	for _, r := range []string{"tflite", "manifest", "csv"} {
		_ = c.MarkFlagRequired(r)
	}
	return c
}

// readTrainingCSV returns the samples of the named channels, row by row.
func readTrainingCSV(path string, channels []string) ([][]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read csv: %w", err)
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.ReuseRecord = true
	header, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: header: %w", path, err)
	}
	cols := make([]int, len(channels))
	for i, c := range channels {
		cols[i] = -1
		for j, h := range header {
			if strings.TrimSpace(h) == c {
				cols[i] = j
			}
		}
		if cols[i] < 0 {
			return nil, fmt.Errorf("%s: no column %q (manifest channels %v, header %v)", path, c, channels, header)
		}
	}
	var rows [][]float64
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(rows) >= maxCSVRows {
			return nil, fmt.Errorf("%s: more than %d rows", path, maxCSVRows)
		}
		row := make([]float64, len(cols))
		for i, j := range cols {
			v, err := strconv.ParseFloat(strings.TrimSpace(rec[j]), 64)
			if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
				return nil, fmt.Errorf("%s line %d column %q: %q is not a finite number", path, line, channels[i], rec[j])
			}
			row[i] = v
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// computeBaseline fills in m's model facts, baseline and golden vectors from the CSV.
func computeBaseline(m *bundle.Manifest, model []byte, csvPath, source string, nGolden int) error {
	in := m.Input
	switch {
	case len(in.Channels) == 0:
		return fmt.Errorf("manifest: input channels are missing")
	case in.Window < 1 || in.Stride < 1:
		return fmt.Errorf("manifest: input window %d and stride %d must be positive", in.Window, in.Stride)
	case len(in.Normalization) != len(in.Channels):
		return fmt.Errorf("manifest: %d normalization entries for %d channels", len(in.Normalization), len(in.Channels))
	}
	for i, n := range in.Normalization {
		if !(n.Std > 0) {
			return fmt.Errorf("manifest: normalization[%d] std %v is not positive", i, n.Std)
		}
	}
	tm, err := tflite.Load(model)
	if err != nil {
		return fmt.Errorf("model: %w", err)
	}
	ip, err := tflite.NewInterpreter(tm, kernels.Builtins(), tflite.Options{})
	if err != nil {
		return fmt.Errorf("model: %w", err)
	}
	if ip.NumInputs() != 1 || ip.NumOutputs() != 1 {
		return fmt.Errorf("model has %d inputs and %d outputs, want 1 and 1", ip.NumInputs(), ip.NumOutputs())
	}
	xt, yt := ip.Input(0), ip.Output(0)
	nc := len(in.Channels)
	if xt.NumElements() != in.Window*nc {
		return fmt.Errorf("model input %v holds %d values, manifest window %d x %d channels needs %d", xt.Shape(), xt.NumElements(), in.Window, nc, in.Window*nc)
	}
	inQ, err := tensorQuant(xt)
	if err != nil {
		return err
	}
	outQ, err := tensorQuant(yt)
	if err != nil {
		return err
	}
	m.Input.DType, m.Input.Quantization, m.Input.Shape = xt.DType().String(), inQ, append([]int(nil), xt.Shape()...)
	m.Output.DType, m.Output.Quantization = yt.DType().String(), outQ
	m.SHA256, m.Size = sha256Hex(model), int64(len(model))
	m.Ops = m.Ops[:0]
	for _, op := range tm.Ops() {
		m.Ops = append(m.Ops, op.Name())
	}

	rows, err := readTrainingCSV(csvPath, in.Channels)
	if err != nil {
		return err
	}
	if len(rows) < in.Window {
		return fmt.Errorf("%s: %d rows, one window needs %d", csvPath, len(rows), in.Window)
	}
	nWin := (len(rows)-in.Window)/in.Stride + 1
	raws := make([][]float64, 0, nWin)
	inputs := make([][]float64, 0, nWin)
	outs := make([][]float64, 0, nWin)
	reals := make([][]float64, 0, nWin)
	for k := 0; k < nWin; k++ {
		raw := make([]float64, 0, in.Window*nc)
		for _, r := range rows[k*in.Stride : k*in.Stride+in.Window] {
			raw = append(raw, r...)
		}
		x := make([]float64, len(raw))
		for i, v := range raw {
			n := in.Normalization[i%nc]
			x[i] = (v - n.Mean) / n.Std
			if inQ != nil {
				x[i] = quantizeValue(x[i], inQ)
			} else {
				x[i] = float64(float32(x[i]))
			}
		}
		y, err := invokeValues(ip, x)
		if err != nil {
			return fmt.Errorf("window %d: %w", k, err)
		}
		real := append([]float64(nil), y...)
		if outQ != nil {
			for i, v := range real {
				real[i] = outQ.Scale * (v - float64(outQ.ZeroPoint))
			}
		}
		raws, inputs, outs, reals = append(raws, raw), append(inputs, x), append(outs, y), append(reals, real)
	}
	names := outputNames(m, len(outs[0]))
	base, err := bundle.ComputeBaseline(source, in.Channels, raws, reals, names)
	if err != nil {
		return err
	}
	m.Baseline = base
	g := &bundle.Golden{Tolerance: baselineFloatTol}
	if inQ != nil || outQ != nil {
		g.Tolerance = baselineInt8Tol
	}
	n := min(nGolden, nWin)
	for i := 0; i < n; i++ {
		k := i * nWin / n // spread over the whole recording
		g.Vectors = append(g.Vectors, bundle.GoldenVector{Name: fmt.Sprintf("window-%d", k), Input: inputs[k], Output: outs[k]})
	}
	m.Golden = g
	return nil
}

func outputNames(m *bundle.Manifest, n int) []string {
	if m.Output.Kind == bundle.OutputClasses && len(m.Output.Labels) == n {
		return m.Output.Labels
	}
	if m.Output.Kind == bundle.OutputAnomalyScore && n == 1 {
		return []string{"anomaly_score"}
	}
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("output_%d", i)
	}
	return names
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// tensorQuant returns a tensor's per-tensor quantization (nil for float32); only float32 and
// int8 model inputs and outputs are supported.
func tensorQuant(t *tensor.Tensor) (*bundle.Quantization, error) {
	switch t.DType() {
	case tensor.Float32:
		return nil, nil
	case tensor.Int8:
		q := t.Quant()
		if q == nil || len(q.Scale) != 1 {
			return nil, fmt.Errorf("tensor %q: int8 without a single scale", t.Name())
		}
		zp := 0
		if len(q.ZeroPoint) > 0 {
			zp = int(q.ZeroPoint[0])
		}
		return &bundle.Quantization{Scale: float64(q.Scale[0]), ZeroPoint: zp}, nil
	}
	return nil, fmt.Errorf("tensor %q is %s; only float32 and int8 model inputs and outputs are supported", t.Name(), t.DType())
}

// quantizeValue is TFLite's AffineQuantize: round(x / scale) in float32, half away from
// zero, plus the zero point, saturated to the type's range.
func quantizeValue(x float64, q *bundle.Quantization) float64 {
	v := math.Round(float64(float32(x)/float32(q.Scale))) + float64(q.ZeroPoint)
	return min(max(v, -128), 127)
}

// invokeValues feeds tensor values (float32 values or int8 integers) and returns the output
// tensor's values the same way.
func invokeValues(ip *tflite.Interpreter, x []float64) ([]float64, error) {
	xt, yt := ip.Input(0), ip.Output(0)
	switch xt.DType() {
	case tensor.Int8:
		for i, v := range x {
			xt.Int8()[i] = int8(v)
		}
	default:
		for i, v := range x {
			xt.Float32()[i] = float32(v)
		}
	}
	if err := ip.Invoke(); err != nil {
		return nil, err
	}
	y := make([]float64, yt.NumElements())
	for i := range y {
		if yt.DType() == tensor.Int8 {
			y[i] = float64(yt.Int8()[i])
		} else {
			y[i] = float64(yt.Float32()[i])
		}
	}
	return y, nil
}

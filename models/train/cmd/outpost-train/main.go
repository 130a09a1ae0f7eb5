// Command outpost-train regenerates the sample models in models/sample (`make models`): the
// vibration anomaly detector and the activity classifier, each in float32 and int8, as
// NAME.tflite, NAME.json (manifest) and NAME-VERSION.opkg (signed with the DEMO key):
//
//	go run ./models/train/cmd/outpost-train -out models/sample
//
// Output is byte-identical on every run and machine for the same flags. -oracle-batch also
// writes the normalised demo windows that scripts/oracle-goldens.sh feeds to the official
// TFLite runtime; -oracle-dir writes each model's golden inputs as NAME.golden.jsonl in the
// oracle's --batch format.
//
// -from-capture DIR closes the loop from the field (docs/monitoring.md): it retrains the
// vibration model on an `outpost capture export` in DIR plus -sim-windows simulated windows,
// and writes the float32 and int8 packages with the next patch version of the exported model
// (or -version):
//
//	go run ./models/train/cmd/outpost-train -from-capture export/ -out retrained/
package main

import (
	"crypto/ed25519"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/dataset"
	"github.com/outpost-ml/outpost/models/train"
)

// DemoPublicKeyFile is the DEMO signing key's public half, written beside the packages.
const DemoPublicKeyFile = "demo-signing.pub"

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "outpost-train:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	cfg, id := train.DefaultConfig(), train.DefaultIdentity()
	fs := flag.NewFlagSet("outpost-train", flag.ContinueOnError)
	out := fs.String("out", "models/sample", "output directory for NAME.tflite and NAME.json")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "seed of data generation and training")
	fs.IntVar(&cfg.Epochs, "epochs", cfg.Epochs, "training epochs")
	fs.StringVar(&id.Version, "version", id.Version, "model version written to the manifest")
	fs.StringVar(&id.Created, "created", id.Created, "creation time written to the manifest (RFC 3339; fixed for reproducibility)")
	batch := fs.String("oracle-batch", "", "also write normalised demo windows for the TFLite oracle's --batch to this file")
	batchN := fs.Int("oracle-batch-n", 8, "number of demo windows for -oracle-batch")
	oracleDir := fs.String("oracle-dir", "", "also write every model's golden inputs as NAME.golden.jsonl (oracle --batch input) into this directory")
	quiet := fs.Bool("q", false, "do not print training progress")
	fromCapture := fs.String("from-capture", "", "retrain the vibration model on the `outpost capture export` in this directory (writes only the vibration packages)")
	simWindows := fs.Int("sim-windows", cfg.TrainWindows, "with -from-capture: simulated training windows added to the captured ones (0: captured only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	progress := stdout
	if *quiet {
		progress = nil
	}
	var (
		res  *train.Result
		act  *train.ActivityResult
		err  error
		arts []*train.Artifact
	)
	if *fromCapture != "" {
		e, err := dataset.Read(*fromCapture)
		if err != nil {
			return err
		}
		versionSet := false
		fs.Visit(func(f *flag.Flag) { versionSet = versionSet || f.Name == "version" })
		if !versionSet {
			id.Version = train.NextVersion(id.Name, e.Manifest.Models)
		}
		cfg.TrainWindows = *simWindows
		if res, err = train.RunFromCapture(cfg, id, e, progress); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "retrained on %d captured windows from %s\n", e.Manifest.Count, *fromCapture)
		arts = res.Artifacts
	} else {
		if res, err = train.Run(cfg, id, progress); err != nil {
			return err
		}
		actID := train.DefaultActivityIdentity()
		actID.Version, actID.Created = id.Version, id.Created
		if act, err = train.RunActivity(train.DefaultActivityConfig(), actID, progress); err != nil {
			return err
		}
		arts = append(res.Artifacts, act.Artifacts...)
	}
	// The DEMO public key beside the packages, so `outpost models verify` works on them.
	pub, err := bundle.MarshalPublicKey(bundle.DemoKey().Public().(ed25519.PublicKey))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("create output dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(*out, DemoPublicKeyFile), pub, 0o644); err != nil {
		return fmt.Errorf("write demo public key: %w", err)
	}
	for _, a := range arts {
		if err := a.WriteFiles(*out); err != nil {
			return err
		}
		man := a.Manifest
		m := man.Metrics
		fmt.Fprintf(stdout, "wrote %s/%s (%d bytes, sha256 %s), %s.json and %s\n", *out, man.ModelFile, man.Size, man.SHA256, man.Name, bundle.FileName(man))
		fmt.Fprintf(stdout, "  %s held-out accuracy %.4f, false positive rate %.4f, recall %v on %d windows\n", man.Input.DType, m.Accuracy, m.FalsePositiveRate, m.Recall, m.EvalWindows)
		if *oracleDir != "" {
			if err := os.MkdirAll(*oracleDir, 0o755); err != nil {
				return fmt.Errorf("create oracle dir: %w", err)
			}
			p := filepath.Join(*oracleDir, man.Name+".golden.jsonl")
			if err := os.WriteFile(p, a.GoldenBatch, 0o644); err != nil {
				return fmt.Errorf("write oracle batch: %w", err)
			}
		}
	}
	if *batch != "" {
		if *batchN < 1 {
			return fmt.Errorf("-oracle-batch-n %d is not positive", *batchN)
		}
		if err := os.WriteFile(*batch, train.OracleBatch(cfg, res.Norm, *batchN), 0o644); err != nil {
			return fmt.Errorf("write oracle batch: %w", err)
		}
	}
	return nil
}

// Command outpost-train regenerates the sample models in models/sample (`make models`):
//
//	go run ./models/train/cmd/outpost-train -out models/sample
//
// Output is byte-identical on every run and machine for the same flags. -oracle-batch also
// writes the normalised demo windows that scripts/oracle-goldens.sh feeds to the official
// TFLite runtime.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/outpost-ml/outpost/models/train"
)

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
	quiet := fs.Bool("q", false, "do not print training progress")
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
	res, err := train.Run(cfg, id, progress)
	if err != nil {
		return err
	}
	if err := res.WriteFiles(*out); err != nil {
		return err
	}
	m := res.Manifest.Metrics
	fmt.Fprintf(stdout, "wrote %s/%s (%d bytes, sha256 %s) and %s.json\n", *out, res.Manifest.ModelFile, res.Manifest.Size, res.Manifest.SHA256, res.Manifest.Name)
	fmt.Fprintf(stdout, "held-out accuracy %.4f, false positive rate %.4f, recall %v on %d windows\n", m.Accuracy, m.FalsePositiveRate, m.Recall, m.EvalWindows)
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

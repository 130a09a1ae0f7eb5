package main

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/httpapi"
	"github.com/outpost-ml/outpost/fleet/wire"
	"github.com/outpost-ml/outpost/models/dataset"
)

func init() { register(newCaptureCmd) }

// addCaptureFlags adds the capture retention count to `outpost serve`; the age,
// --retain-captures, is with the other --retain-* flags (serve_retention.go).
func addCaptureFlags(cmd *cobra.Command, cfg *serveConfig) {
	cmd.Flags().IntVar(&cfg.CaptureRetainCount, "retain-captures-count", fleet.DefaultCaptureRetainCount, "most captured windows kept; the oldest received are deleted beyond it (0: no limit)")
}

// captureReader is the store's capture side for the API, or nil when it keeps none.
func captureReader(store fleet.Store) httpapi.Captures {
	if c, ok := store.(httpapi.Captures); ok {
		return c
	}
	return nil
}

func newCaptureCmd() *cobra.Command {
	c := &cobra.Command{Use: "capture", Short: "Field data captured by devices for retraining"}
	var (
		api    apiFlags
		model  string
		since  string
		device string
		format string
	)
	export := &cobra.Command{
		Use:   "export --model NAME[@VERSION] [--since TIME|DURATION] [--device ID] --format csv|npy DIR",
		Short: "Write captured windows and their results, with a manifest, for a training script",
		Long: `Export the windows devices captured under their capture policy (docs/monitoring.md) for one
model into DIR: manifest.json, windows.npy (float32 [count, samples, channels], NumPy format
1.0) or windows.csv (index,sample,CHANNEL…), and results.csv (one row per window: device,
seqs, time, reason, model, score, label and event as the model decided, truth (the feedback
label, when one was given) and label_source (feedback or model)). --since takes an RFC 3339 time or a duration
back from now (24h). Windows whose shape differs from the first one exported are skipped and
counted in the manifest. models/train --from-capture DIR retrains the sample model on it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if model == "" {
				return fmt.Errorf("--model is required")
			}
			if format != dataset.FormatCSV && format != dataset.FormatNPY {
				return fmt.Errorf("--format %q: want csv or npy", format)
			}
			q := url.Values{"model": {model}}
			if since != "" {
				if _, err := httpapi.ParseSince(since, time.Now()); err != nil {
					return fmt.Errorf("--since: %w", err)
				}
				q.Set("since", since)
			}
			if device != "" {
				if err := wire.ValidDeviceID(device); err != nil {
					return fmt.Errorf("--device: %w", err)
				}
				q.Set("device", device)
			}
			cl, err := api.client()
			if err != nil {
				return err
			}
			items, err := fetchCaptures(cmd.Context(), cl, q)
			if err != nil {
				return err
			}
			e, err := buildExport(model, format, items)
			if err != nil {
				return err
			}
			if err := dataset.Write(args[0], e); err != nil {
				return err
			}
			m := e.Manifest
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %d windows of shape %v (%s) from %d devices to %s (%s, %s, %s)",
				m.Count, m.Shape, strings.Join(m.Channels, ","), len(m.Devices), args[0], dataset.ManifestFile, m.Files.Windows, m.Files.Results)
			if m.Skipped > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "; skipped %d of another shape", m.Skipped)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	api.add(export)
	export.Flags().StringVar(&model, "model", "", "model NAME (any version) or NAME@VERSION whose captures to export (required)")
	export.Flags().StringVar(&since, "since", "", "only windows received at or after this RFC 3339 time, or this long ago (e.g. 24h)")
	export.Flags().StringVar(&device, "device", "", "only windows from this device")
	export.Flags().StringVar(&format, "format", dataset.FormatNPY, "windows file format: npy or csv")
	c.AddCommand(export)
	return c
}

// maxExportItems bounds one export in memory (about 2 GB of float32 at the largest window).
const maxExportItems = 1_000_000

// fetchCaptures pages through GET /v1/captures.
func fetchCaptures(ctx context.Context, cl *apiClient, q url.Values) ([]fleet.CapturedItem, error) {
	var out []fleet.CapturedItem
	for {
		var page fleet.CapturePage
		if err := cl.do(ctx, "GET", "/v1/captures?"+q.Encode(), "", nil, &page); err != nil {
			return nil, err
		}
		out = append(out, page.Items...)
		if len(out) > maxExportItems {
			return nil, fmt.Errorf("more than %d captured windows match; narrow the export with --since or --device", maxExportItems)
		}
		if page.Next == "" || len(page.Items) == 0 {
			return out, nil
		}
		q.Set("after", page.Next)
	}
}

// buildExport turns stored captures into an export: the first item fixes shape and channels,
// items that differ are skipped and counted.
func buildExport(model, format string, items []fleet.CapturedItem) (*dataset.Export, error) {
	if len(items) == 0 {
		return nil, fmt.Errorf("no captured windows of model %q match (is a capture policy set for its devices?)", model)
	}
	first := items[0]
	e := &dataset.Export{Manifest: dataset.Manifest{
		Model: model, Windows: format, Shape: slices.Clone(first.Shape), Channels: slices.Clone(first.Channels),
	}}
	m := &e.Manifest
	models, devices := map[string]bool{}, map[string]bool{}
	for _, it := range items {
		if !slices.Equal(it.Shape, first.Shape) || !slices.Equal(it.Channels, first.Channels) {
			m.Skipped++
			continue
		}
		e.Windows = append(e.Windows, it.Values)
		row := dataset.Row{
			Device: it.Device, Epoch: it.Epoch, CaptureSeq: it.Seq, Time: it.Time, Reason: it.Reason,
			ResultSeq: it.Result.Seq, Model: it.Result.Model, Score: it.Result.Score, Label: it.Result.Label, Event: it.Result.Event,
		}
		if it.Feedback != nil {
			row.Truth = it.Feedback.Label
		}
		e.Rows = append(e.Rows, row)
		models[it.Result.Model], devices[it.Device] = true, true
		if m.From.IsZero() || it.Time.Before(m.From) {
			m.From = it.Time.UTC()
		}
		if it.Time.After(m.To) {
			m.To = it.Time.UTC()
		}
	}
	for k := range models {
		m.Models = append(m.Models, k)
	}
	for k := range devices {
		m.Devices = append(m.Devices, k)
	}
	slices.Sort(m.Models)
	slices.Sort(m.Devices)
	return e, nil
}

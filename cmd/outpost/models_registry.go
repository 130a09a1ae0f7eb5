package main

import (
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/fleet"
	"github.com/outpost-ml/outpost/fleet/registry"
)

// `outpost models push|list|show`: the controller's model registry, over its HTTP API.

func newModelsRegistryCmds() []*cobra.Command {
	var af apiFlags
	push := &cobra.Command{
		Use:   "push PKG",
		Short: "Register a signed package with the controller (refused if signature, manifest or ops do not fit)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := af.client()
			if err != nil {
				return err
			}
			pkg, err := readLimited(args[0], "package", registry.DefaultMaxPackage)
			if err != nil {
				return err
			}
			var m fleet.Model
			if err := c.do(cmd.Context(), "POST", "/v1/models", "application/octet-stream", pkg, &m); err != nil {
				return fmt.Errorf("push %s: %w", args[0], err)
			}
			pub := "published to the TUF repository"
			if !m.Published {
				pub = "NOT published (the controller has no TUF repository configured); rollouts refuse it"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s@%s registered: release %d, target %s, package %s, %s\n", m.Name, m.Version, m.Release, m.Target, short(m.SHA256), pub)
			return nil
		},
	}
	af.add(push)

	var lf apiFlags
	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the models registered with the controller",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := lf.client()
			if err != nil {
				return err
			}
			var ms []fleet.Model
			if err := c.do(cmd.Context(), "GET", "/v1/models", "", nil, &ms); err != nil {
				return err
			}
			if listJSON {
				return printJSON(cmd.OutOrStdout(), ms)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tRELEASE\tSIZE\tOPS\tMIN AGENT\tPUBLISHED\tPUSHED")
			for _, m := range ms {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%v\t%s\n", m.Name, m.Version, m.Release, byteSize(m.PackageSize), len(m.Ops), m.MinAgentVersion, m.Published, m.Pushed.Format("2006-01-02 15:04"))
			}
			return tw.Flush()
		},
	}
	lf.add(list)
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")

	var sf apiFlags
	var showJSON bool
	show := &cobra.Command{
		Use:   "show NAME@VERSION",
		Short: "Show a registered model: ops, sizes, baseline summary and the devices running it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, _, err := registry.ParseRef(args[0]); err != nil {
				return err
			}
			c, err := sf.client()
			if err != nil {
				return err
			}
			var d registry.Detail
			if err := c.do(cmd.Context(), "GET", "/v1/models/"+url.PathEscape(args[0]), "", nil, &d); err != nil {
				return err
			}
			if showJSON {
				return printJSON(cmd.OutOrStdout(), d)
			}
			w := cmd.OutOrStdout()
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			row := func(k, f string, a ...any) { fmt.Fprintf(tw, "%s\t"+f+"\n", append([]any{k}, a...)...) }
			row("model", "%s@%s (release %d)", d.Name, d.Version, d.Release)
			row("description", "%s", d.Description)
			row("target", "%s (%s, package sha256 %s)", d.Target, byteSize(d.PackageSize), short(d.SHA256))
			row("model file", "%s, sha256 %s", byteSize(d.ModelSize), short(d.ModelSHA256))
			row("ops", "%s", strings.Join(d.Ops, ", "))
			row("min agent", "%s", d.MinAgentVersion)
			row("input", "%s, window %d", d.Sensor, d.Window)
			row("output", "%s", d.OutputKind)
			row("metrics", "accuracy %.3f, false positive rate %.3f", d.Metrics.Accuracy, d.Metrics.FalsePositiveRate)
			row("golden vectors", "%d", d.Golden)
			row("signed by", "%s", d.SignedBy)
			row("published", "%v", d.Published)
			row("pushed", "%s", d.Pushed.Format("2006-01-02 15:04:05 MST"))
			row("devices", "%d %s", len(d.Devices), strings.Join(d.Devices, " "))
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(w, "\nbaseline:")
			tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "KIND\tNAME\tCOUNT\tMEAN\tSTD\tMIN\tMAX\t")
			for _, f := range d.Baseline {
				fmt.Fprintf(tw, "%s\t%s\t%d\t%.4g\t%.4g\t%.4g\t%.4g\t\n", f.Kind, f.Name, f.Count, f.Mean, f.Std, f.Min, f.Max)
			}
			return tw.Flush()
		},
	}
	sf.add(show)
	show.Flags().BoolVar(&showJSON, "json", false, "print JSON")
	return []*cobra.Command{push, list, show}
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

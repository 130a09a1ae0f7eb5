package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/outpost-ml/outpost/fleet/rollout"
)

// `outpost devices tag|tags`: the device tags rollouts select by (--select KEY=VALUE).

func init() { register(newDevicesCmd) }

func newDevicesCmd() *cobra.Command {
	c := &cobra.Command{Use: "devices", Short: "Device credentials and tags"}
	var tf apiFlags
	tag := &cobra.Command{
		Use:   "tag ID [KEY=VALUE...]",
		Short: "Replace a device's tags (none: remove them)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tags := map[string]string{}
			for _, a := range args[1:] {
				k, v, err := rollout.ParseSelector(a)
				if err != nil {
					return err
				}
				tags[k] = v
			}
			body, err := json.Marshal(tags)
			if err != nil {
				return err
			}
			cl, err := tf.client()
			if err != nil {
				return err
			}
			if err := cl.do(cmd.Context(), "PUT", "/v1/devices/"+url.PathEscape(args[0])+"/tags", "application/json", body, &tags); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", args[0], formatTags(tags))
			return nil
		},
	}
	tf.add(tag)
	var lf apiFlags
	list := &cobra.Command{
		Use:   "tags",
		Short: "List every device's tags",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := lf.client()
			if err != nil {
				return err
			}
			var all map[string]map[string]string
			if err := cl.do(cmd.Context(), "GET", "/v1/tags", "", nil, &all); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "DEVICE\tTAGS")
			for _, id := range slices.Sorted(maps.Keys(all)) {
				fmt.Fprintf(tw, "%s\t%s\n", id, formatTags(all[id]))
			}
			return tw.Flush()
		},
	}
	lf.add(list)
	c.AddCommand(tag, list, newDevicesAddCmd(), newDevicesRevokeCmd(), newDevicesEnrollTokenCmd(), newDevicesMonitorCmd())
	addDevicesList(c) // views.go: bare `outpost devices` lists the fleet
	return c
}

func formatTags(tags map[string]string) string {
	if len(tags) == 0 {
		return "(none)"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		parts = append(parts, k+"="+tags[k])
	}
	return strings.Join(parts, " ")
}

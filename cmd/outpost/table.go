package main

import (
	"bytes"
	"io"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/renderer"
	tws "github.com/olekukonko/tablewriter/tw"
)

// Terminal tables for the CLI's views (devices, device, results). Plain: no borders, an
// upper-case header, columns two spaces apart, every cell left-aligned and never wrapped, so
// the output reads like kubectl's and greps and cuts cleanly. One helper so every command
// (and `outpost health --watch`) prints tables alike.

// table is a table being filled.
type table struct {
	t   *tablewriter.Table
	buf bytes.Buffer
	w   io.Writer
}

// newTable starts a table with the given column names.
func newTable(w io.Writer, header ...string) *table {
	tb := &table{w: w}
	t := tablewriter.NewTable(&tb.buf,
		tablewriter.WithRenderer(renderer.NewBlueprint(tws.Rendition{
			Borders: tws.BorderNone,
			Symbols: tws.NewSymbols(tws.StyleNone),
			Settings: tws.Settings{
				Separators: tws.Separators{BetweenRows: tws.Off, BetweenColumns: tws.Off},
				Lines:      tws.Lines{ShowHeaderLine: tws.Off, ShowFooterLine: tws.Off},
			},
		})),
		tablewriter.WithHeaderAutoFormat(tws.Off),
		tablewriter.WithHeaderAlignment(tws.AlignLeft),
		tablewriter.WithRowAlignment(tws.AlignLeft),
		tablewriter.WithRowAutoWrap(tws.WrapNone),
		tablewriter.WithHeaderAutoWrap(tws.WrapNone),
		tablewriter.WithPadding(tws.Padding{Left: "", Right: "  ", Overwrite: true}),
	)
	hs := make([]any, len(header))
	for i, h := range header {
		hs[i] = h
	}
	t.Header(hs...)
	tb.t = t
	return tb
}

// row appends one row; cells are strings already formatted.
func (t *table) row(cells ...string) error { return t.t.Append(cells) }

// render writes the table, without the padding the last column leaves at line ends.
func (t *table) render() error {
	if err := t.t.Render(); err != nil {
		return err
	}
	var out bytes.Buffer
	for line := range bytes.Lines(t.buf.Bytes()) {
		out.Write(bytes.TrimRight(line, " \n"))
		out.WriteByte('\n')
	}
	_, err := t.w.Write(out.Bytes())
	return err
}

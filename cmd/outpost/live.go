package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// liveScreen shows successive frames of a live table. On a terminal each frame overwrites the
// previous one in place (cursor up, each line cleared to its end, the rest of the old frame
// erased), so the table neither scrolls nor flickers; anywhere else (a pipe, a file, a test)
// frames are appended as plain lines, because escape sequences in a log are noise.
type liveScreen struct {
	out   io.Writer
	tty   bool
	lines int // lines of the previous frame on the terminal
}

func newLiveScreen(out io.Writer) *liveScreen { return &liveScreen{out: out, tty: isTerminal(out)} }

// draw shows frame. On a terminal heading is left out: the frame replaces its predecessor.
// Elsewhere heading (e.g. "[12s]") precedes it so the appended frames can be told apart.
func (s *liveScreen) draw(heading, frame string) {
	frame = strings.TrimRight(frame, "\n")
	if !s.tty {
		if heading != "" {
			fmt.Fprintf(s.out, "\n%s\n", heading)
		}
		fmt.Fprintln(s.out, frame)
		return
	}
	var b bytes.Buffer
	if s.lines > 0 {
		fmt.Fprintf(&b, "\033[%dA\r", s.lines) // back to the first line of the last frame
	}
	lines := strings.Split(frame, "\n")
	for _, l := range lines {
		b.WriteString(l)
		b.WriteString("\033[K\n") // erase what the longer old line left to the right
	}
	b.WriteString("\033[J") // erase old lines below a shorter frame
	s.lines = len(lines)
	s.out.Write(b.Bytes()) //nolint:errcheck // a terminal write error leaves nothing to do
}

// isTerminal reports whether w is a terminal (a character device that answers terminal
// ioctls), the only place where cursor movement is understood.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

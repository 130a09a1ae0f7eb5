package main

import "testing"

func TestQueuedMessages(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		size, issued, want int
	}{
		{0, 0, 16000},          // no device yet: sized for the minimum fleet of 1,000
		{0, 400, 16000},        // a small fleet still gets the minimum
		{0, 5000, 80000},       // the issued devices, 16 batches each
		{250, 5000, 4000},      // --fleet-size wins over the issued count
		{10, 0, 1000},          // never below Mosquitto's own default
		{100000, 0, 1_600_000}, // a large fleet
	} {
		if got := queuedMessages(c.size, c.issued); got != c.want {
			t.Errorf("queuedMessages(%d, %d) = %d, want %d", c.size, c.issued, got, c.want)
		}
	}
}

package sensor_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/outpost-ml/outpost/agent/sensor"
)

type constSource struct{ v float32 }

func (c *constSource) Read(ctx context.Context, dst []float32) (time.Time, error) {
	dst[0] = c.v
	return time.Now(), ctx.Err()
}
func (c *constSource) Info() sensor.Info {
	return sensor.Info{Kind: "test:const", RateHz: 10, Channels: 1}
}
func (c *constSource) Close() error { return nil }

func init() {
	sensor.Register("test:const", func(args url.Values) (sensor.Source, error) {
		if err := sensor.CheckArgs(args, "v"); err != nil {
			return nil, err
		}
		if args.Get("v") == "bad" {
			return nil, errors.New("bad value")
		}
		return &constSource{v: 1}, nil
	})
}

func TestOpen(t *testing.T) {
	tests := []struct {
		spec    string
		wantErr string // substring; empty means success
	}{
		{"test:const", ""},
		{"test:const?v=1", ""},
		{"test:nope", `unknown kind "test:nope"`},
		{"", `unknown kind ""`},
		{"test:const?x=1", `unknown argument "x"`},
		{"test:const?v=1&v=2", `argument "v" given 2 times`},
		{"test:const?v=%zz", "arguments"},
		{"test:const?v=bad", "bad value"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			src, err := sensor.Open(tt.spec)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Open(%q) = %v, want success", tt.spec, err)
				}
				var buf [1]float32
				if _, err := src.Read(context.Background(), buf[:]); err != nil || buf[0] != 1 {
					t.Fatalf("Read = %v, %v; want 1, nil", buf[0], err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Open(%q) = %v, want error containing %q", tt.spec, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error has more than one line: %q", err)
			}
		})
	}
}

func TestKindsSorted(t *testing.T) {
	ks := sensor.Kinds()
	found := false
	for i, k := range ks {
		if i > 0 && ks[i-1] >= k {
			t.Fatalf("Kinds() = %v, not sorted", ks)
		}
		found = found || k == "test:const"
	}
	if !found {
		t.Fatalf("Kinds() = %v, missing test:const", ks)
	}
}

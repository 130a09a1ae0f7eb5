package flexbuf

import (
	"math"
	"os"
	"strings"
	"testing"
)

// The two committed buffers were written by the official FlexBuffers encoder (the flatbuffers
// npm package's flexbuffers.encode): the options of an SSD MobileNet's
// TFLite_Detection_PostProcess, and a map of every value kind whose values all fit 4 bytes
// (that encoder writes float32 bits into 8-byte slots and integer-valued doubles as ints, which
// the C++ reader would misread as well).
func TestDecodeOfficialEncoder(t *testing.T) {
	b, err := os.ReadFile("testdata/ssd-options.flexbuf")
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeMap(b)
	if err != nil {
		t.Fatal(err)
	}
	ints := map[string]int64{"max_detections": 10, "max_classes_per_detection": 1, "detections_per_class": 100, "num_classes": 90}
	for k, want := range ints {
		if got := m[k].Int(); got != want {
			t.Errorf("%s = %d, want %d", k, got, want)
		}
	}
	floats := map[string]float64{"nms_score_threshold": 1e-8, "nms_iou_threshold": 0.6, "y_scale": 10, "x_scale": 10, "h_scale": 5, "w_scale": 5}
	for k, want := range floats {
		if got := m[k].Float(); float32(got) != float32(want) {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	if m["use_regular_nms"].Bool() || !m["_output_quantized"].Bool() || m["use_regular_nms"].Type != Bool {
		t.Errorf("bools: %+v %+v", m["use_regular_nms"], m["_output_quantized"])
	}
	if !m["missing"].IsNull() || len(m) != 13 {
		t.Errorf("%d entries, missing key = %+v", len(m), m["missing"])
	}

	b, err = os.ReadFile("testdata/mixed.flexbuf")
	if err != nil {
		t.Fatal(err)
	}
	if m, err = DecodeMap(b); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]int64{"a": 300, "b": -70000, "u": 2000000000} {
		if got := m[k].Int(); got != want {
			t.Errorf("%s = %d, want %d", k, got, want)
		}
	}
	if m["c"].Float() != 1.5 || m["c"].Int() != 1 || !m["e"].Bool() || !m["n"].IsNull() || m["n"].Bool() {
		t.Errorf("c %v e %v n %+v", m["c"].Float(), m["e"].Bool(), m["n"])
	}
	for k, want := range map[string]Type{"f": String, "h": Map} {
		if m[k].Type != want || m[k].Int() != 0 {
			t.Errorf("%s: %+v, want type %d reading 0", k, m[k], want)
		}
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	entries := []Entry{{"zeta", int64(-3)}, {"alpha", true}, {"mid", 0.25}, {"big", 100}, {"off", false}}
	for _, w := range []int{0, 4, 8} {
		b, err := EncodeMap(entries, w)
		if err != nil {
			t.Fatalf("width %d: %v", w, err)
		}
		m, err := DecodeMap(b)
		if err != nil {
			t.Fatalf("width %d: %v", w, err)
		}
		if m["zeta"].Int() != -3 || !m["alpha"].Bool() || m["mid"].Float() != 0.25 || m["big"].Int() != 100 || m["off"].Bool() || m["off"].IsNull() {
			t.Errorf("width %d: decoded %+v", w, m)
		}
	}
	for _, w := range []int{1, 2} {
		b, err := EncodeMap([]Entry{{"k", -5}, {"t", true}}, w)
		if err != nil {
			t.Fatalf("width %d: %v", w, err)
		}
		if m, err := DecodeMap(b); err != nil || m["k"].Int() != -5 || m["k"].Float() != -5 || !m["t"].Bool() {
			t.Errorf("width %d: %+v, %v", w, m, err)
		}
	}
	if b, err := EncodeMap([]Entry{{"x", int64(math.MaxInt64)}}, 0); err != nil {
		t.Error(err)
	} else if m, _ := DecodeMap(b); m["x"].Int() != math.MaxInt64 {
		t.Errorf("int64 max decoded as %d", m["x"].Int())
	}
}

func TestEncodeErrors(t *testing.T) {
	tests := []struct {
		entries []Entry
		width   int
		want    string
	}{
		{[]Entry{{"a", 1}, {"a", 2}}, 0, `key "a" twice`},
		{[]Entry{{"a", "s"}}, 0, "value of type string"},
		{[]Entry{{"a", 1.5}}, 2, "no 2-byte floats"},
		{[]Entry{{"a", 200}}, 1, "does not fit in 1 bytes"},
		{[]Entry{{"a", 1}}, 3, "byte width 3"},
		{[]Entry{{strings.Repeat("k", 300), 1}}, 1, "does not fit in 1 bytes"},
	}
	for _, tc := range tests {
		if _, err := EncodeMap(tc.entries, tc.width); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("EncodeMap(%v, %d) error %v, want %q", tc.entries, tc.width, err, tc.want)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	good, err := EncodeMap([]Entry{{"a", 1}, {"b", 2.5}}, 4)
	if err != nil {
		t.Fatal(err)
	}
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	n := len(good)
	tests := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"root width", mut(func(b []byte) []byte { b[n-1] = 3; return b }), "root byte width 3"},
		{"root too wide", []byte{0, 0x24, 8}, "does not fit"},
		{"root not a map", mut(func(b []byte) []byte { b[n-2] = byte(Int) << 2; return b }), "want a map"},
		{"root offset", mut(func(b []byte) []byte { b[n-6] = 0xff; b[n-5] = 0xff; return b }), "points before the buffer"},
		{"size", mut(func(b []byte) []byte { return setMapSize(b, 1000) }), "does not fit"},
		{"keys count", mut(func(b []byte) []byte { return setMapSize(b, 1) }), "1 values but 2 keys"},
		{"unterminated key", append([]byte("ab"), good[3:]...), ""},
		{"value type", mut(func(b []byte) []byte { b[n-10] = 0xfc; return b }), "unknown type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeMap(tc.b)
			if err == nil {
				if tc.want == "" {
					return // a mutation that still decodes is fine: it must not panic
				}
				t.Fatalf("decoded, want an error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q, want one line containing %q", err, tc.want)
			}
		})
	}
}

// setMapSize overwrites the size field of the root map (a 4-byte-wide buffer).
func setMapSize(b []byte, size uint32) []byte {
	n := len(b)
	root := n - 2 - 4
	off := uint32(b[root]) | uint32(b[root+1])<<8 | uint32(b[root+2])<<16 | uint32(b[root+3])<<24
	p := root - int(off) - 4
	b[p], b[p+1], b[p+2], b[p+3] = byte(size), byte(size>>8), byte(size>>16), byte(size>>24)
	return b
}

// FuzzDecodeMap: any bytes decode to a map or a one-line error, never a panic; an encoded map
// decodes to what was encoded.
func FuzzDecodeMap(f *testing.F) {
	for _, p := range []string{"testdata/ssd-options.flexbuf", "testdata/mixed.flexbuf"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	if b, err := EncodeMap([]Entry{{"max_detections", 3}, {"nms_iou_threshold", 0.5}, {"use_regular_nms", true}}, 1+0); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMap(b)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		if len(m) > len(b) {
			t.Fatalf("%d entries from %d bytes", len(m), len(b))
		}
		for _, v := range m {
			_, _, _ = v.Int(), v.Float(), v.Bool()
		}
	})
}

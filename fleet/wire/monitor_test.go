package wire

import (
	"strings"
	"testing"
)

func TestDecodeFeedback(t *testing.T) {
	for _, c := range []struct {
		in, err string
	}{
		{`{"v":1,"labels":[{"device":"pump-1","seq":7,"label":"anomaly"},{"device":"pump-2","epoch":9,"seq":1,"label":"normal","source":"tech"}]}`, ""},
		{`{"labels":[{"device":"pump-1","seq":7,"label":"a"}]}`, "missing schema version"},
		{`{"v":1,"labels":[]}`, "no labels"},
		{`{"v":1,"labels":[{"device":"pump/1","seq":7,"label":"a"}]}`, "not allowed"},
		{`{"v":1,"labels":[{"device":"p","seq":0,"label":"a"}]}`, "seq 0"},
		{`{"v":1,"labels":[{"device":"p","seq":1,"label":""}]}`, "label length 0"},
		{`{"v":1,"labels":[{"device":"p","seq":1,"label":"` + strings.Repeat("x", 257) + `"}]}`, "label length 257"},
		{`{"v":1,"labels":[{"device":"p","seq":1,"epoch":9007199254740992,"label":"a"}]}`, "beyond 2^53"},
		{`{"v":2,"labels":[]}`, "unsupported schema version"},
	} {
		b, err := DecodeFeedback([]byte(c.in))
		if c.err == "" {
			if err != nil || len(b.Labels) != 2 || b.Labels[1].Epoch != 9 || b.Labels[1].Source != "tech" {
				t.Errorf("%s: %+v, %v", c.in, b, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%.60s: err %v, want %q", c.in, err, c.err)
		}
	}
	many := `{"v":1,"labels":[` + strings.Repeat(`{"device":"p","seq":1,"label":"a"},`, MaxFeedbackLabels) + `{"device":"p","seq":1,"label":"a"}]}`
	if _, err := DecodeFeedback([]byte(many)); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Errorf("%d labels: %v", MaxFeedbackLabels+1, err)
	}
}

func FuzzDecodeFeedback(f *testing.F) {
	f.Add([]byte(`{"v":1,"labels":[{"device":"pump-1","epoch":3,"seq":7,"label":"anomaly","source":"x"}]}`))
	f.Add([]byte(`{"v":1,"labels":[{"device":"","seq":0}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := DecodeFeedback(data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error %q", err)
			}
			return
		}
		for _, l := range b.Labels {
			if ValidDeviceID(l.Device) != nil || l.Seq == 0 || l.Label == "" || len(l.Label) > MaxLabelBytes {
				t.Fatalf("accepted label %+v", l)
			}
		}
		again, err := Encode(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeFeedback(again); err != nil {
			t.Fatalf("re-decode of %s: %v", again, err)
		}
	})
}

package tfpredict_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/agent/tfpredict"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
)

// Every sample model passes its own golden vectors on the device's interpreter, a changed
// expectation fails, and a resolver without the model's ops refuses it.
func TestCheckGolden(t *testing.T) {
	for _, name := range []string{"vibration-anomaly-f32", "vibration-anomaly-i8", "activity-f32", "activity-i8"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("../../models/sample", name+".tflite")
			p, err := tfpredict.Load(path, "")
			if err != nil {
				t.Fatal(err)
			}
			if err := p.CheckGolden(); err != nil {
				t.Fatalf("golden: %v", err)
			}
			if p.ArenaBytes() <= 0 {
				t.Errorf("arena %d bytes", p.ArenaBytes())
			}
			data, _ := os.ReadFile(path)
			man := p.Manifest()
			v := &man.Golden.Vectors[len(man.Golden.Vectors)-1]
			v.Output[0] += 1000 // far outside any tolerance, in int8 codes or in float
			if err := p.CheckGolden(); err == nil || !strings.Contains(err.Error(), "golden") {
				t.Errorf("changed golden output: err %v", err)
			}
			v.Output[0] -= 1000
			if _, err := tfpredict.NewWith(data, man, name, tfpredict.Options{Resolver: kernels.NewResolver()}); err == nil || !strings.Contains(err.Error(), "unsupported op") {
				t.Errorf("empty resolver: err %v", err)
			}
		})
	}
}

package synth

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/outpost-ml/outpost/models/bundle"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
)

// TestMobileNetV2Int8 builds the classic 224×224 network and checks its size, and that the
// network runs; with $OUTPOST_SYNTH_DIR set it also writes the file there (for make bench-oracle and
// for running it through the official runtimes).
func TestMobileNetV2Int8(t *testing.T) {
	data, err := MobileNetV2Int8(MobileNetV2{Input: 224, Alpha: 1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	// 3.5 M weights, int8, plus int32 biases: a 3–4 MB file like the published int8 model.
	if len(data) < 3_000_000 || len(data) > 4_500_000 {
		t.Fatalf("model is %d bytes, want 3–4.5 MB", len(data))
	}
	if dir := os.Getenv("OUTPOST_SYNTH_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, "mobilenet_v2_int8_224.tflite"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Run the same network at 96×96 (the same weights; a fifth of the work, which counts
	// under qemu in make test-kernels).
	small, err := MobileNetV2Int8(MobileNetV2{Input: 96, Alpha: 1, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	m, err := tflite.Load(small)
	if err != nil {
		t.Fatal(err)
	}
	ip, err := tflite.NewInterpreter(m, kernels.Builtins(), tflite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := ip.Input(0).Int8()
	for i := range in {
		in[i] = int8(i*7919 + i>>5)
	}
	if err := ip.Invoke(); err != nil {
		t.Fatal(err)
	}
	out := ip.Output(0).Int8()
	if len(out) != 1000 {
		t.Fatalf("%d outputs", len(out))
	}
	lo, hi := out[0], out[0]
	for _, v := range out {
		lo, hi = min(lo, v), max(hi, v)
	}
	t.Logf("arena %d bytes, output range [%d, %d]", ip.ArenaBytes(), lo, hi)
}

func TestVisionManifest(t *testing.T) {
	data, err := MobileNetV2Int8(MobileNetV2{Input: 96, Alpha: 0.35, Classes: 10, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	man, err := VisionManifest("mnv2-test", data, 96*96, 1)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := man.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.DecodeManifest(enc); err != nil {
		t.Fatal(err)
	}
	if man.Input.Window != 96*96 || len(man.Input.Channels) != 3 || len(man.Output.Labels) != 10 {
		t.Fatalf("manifest input %+v output labels %d", man.Input, len(man.Output.Labels))
	}
}

// TestResNet8Int8 builds the MLPerf Tiny ResNet-8 shape and runs it; with $OUTPOST_SYNTH_DIR
// set it writes the file there.
func TestResNet8Int8(t *testing.T) {
	data, err := ResNet8Int8(1)
	if err != nil {
		t.Fatal(err)
	}
	if dir := os.Getenv("OUTPOST_SYNTH_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, "resnet8_int8.tflite"), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m, err := tflite.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	ip, err := tflite.NewInterpreter(m, kernels.Builtins(), tflite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := ip.Invoke(); err != nil {
		t.Fatal(err)
	}
	if n := ip.Output(0).NumElements(); n != 10 {
		t.Fatalf("%d outputs, want 10", n)
	}
}

// BenchmarkSynth times Invoke on the synthetic networks, one thread, on the path the machine
// picks (OUTPOST_PORTABLE=1 for the pure-Go one), so a CPU profile shows where a whole
// model's time goes.
func BenchmarkSynth(b *testing.B) {
	r8, err := ResNet8Int8(1)
	if err != nil {
		b.Fatal(err)
	}
	mn, err := MobileNetV2Int8(MobileNetV2{Input: 224, Alpha: 1, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		data []byte
	}{{"resnet8", r8}, {"mobilenet_v2_224", mn}} {
		b.Run(c.name, func(b *testing.B) {
			m, err := tflite.Load(c.data)
			if err != nil {
				b.Fatal(err)
			}
			ip, err := tflite.NewInterpreter(m, kernels.Builtins(), tflite.Options{})
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if err := ip.Invoke(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

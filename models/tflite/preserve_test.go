package tflite_test

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/tflite/oracletest"
)

// TestInputsPreserved: graph inputs keep their memory for the whole Invoke, as in TFLite, so a
// caller may set them once and invoke again (the planner must not reuse an input's bytes for a
// later tensor). person_detect is deep enough that reuse would otherwise happen.
func TestInputsPreserved(t *testing.T) {
	ip := oracletest.ReadInterpreter(t, filepath.Join(oracletest.CorpusDir(t), "person_detect", "person_detect.tflite"), kernels.Builtins())
	in := ip.Input(0).Int8()
	for i := range in {
		in[i] = int8(i*7 + i/96)
	}
	want := bytes.Clone(ip.Input(0).Bytes())
	var outs [][]byte
	for range 3 {
		if err := ip.Invoke(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(ip.Input(0).Bytes(), want) {
			t.Fatal("Invoke overwrote the model's input")
		}
		outs = append(outs, bytes.Clone(ip.Output(0).Bytes()))
	}
	if !bytes.Equal(outs[0], outs[1]) || !bytes.Equal(outs[1], outs[2]) {
		t.Errorf("repeated Invoke on the same input gave %v, %v, %v", outs[0], outs[1], outs[2])
	}
}

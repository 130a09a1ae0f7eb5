package kernels_test

import (
	"math"
	"strings"
	"testing"

	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/flexbuf"
	"github.com/outpost-ml/outpost/models/tflite/kernels"
	"github.com/outpost-ml/outpost/models/tflite/oracletest"
	"github.com/outpost-ml/outpost/models/tflite/schema"
	"github.com/outpost-ml/outpost/models/tflite/write"
)

// Single-op oracle cases for TFLite_Detection_PostProcess (the full runtime's default custom
// op): both NMS modes, with and without a background column, several class counts, score
// thresholds and detection limits. Box encodings and class scores are the oracle's random
// inputs (uniform in [-1, 1), so ties, whose order the runtime leaves to an unstable sort, do
// not occur); anchors are constant, on an overlapping grid so that suppression happens.

const detectionDir = "testdata/ops/detection"

type detCase struct {
	name                        string
	boxes, classes, numClasses  int
	opts                        []flexbuf.Entry
	maxDetections, perDetection int
	anchors                     []float32 // nil: anchors(boxes)
	uint8In                     bool      // quantized uint8 box encodings and class scores
}

// anchors is a boxes×4 grid of [y, x, h, w] anchors whose neighbours overlap.
func anchors(boxes int) []float32 {
	a := make([]float32, 0, 4*boxes)
	side := 1
	for side*side < boxes {
		side++
	}
	for i := 0; i < boxes; i++ {
		y, x := float32(i/side)+0.5, float32(i%side)+0.5
		a = append(a, y/float32(side), x/float32(side), 1.6/float32(side), 1.4/float32(side))
	}
	return a
}

func detectionModel(c detCase) func() ([]byte, error) {
	return func() ([]byte, error) {
		opts, err := flexbuf.EncodeMap(c.opts, 0)
		if err != nil {
			return nil, err
		}
		m := write.NewModel("outpost detection op test: " + c.name)
		sg := m.Subgraph()
		nb := int32(c.boxes)
		bt, ct := f32(1, nb, 4), f32(1, nb, int32(c.classes))
		if c.uint8In {
			bt = ts{typ: schema.TensorTypeUint8, shape: bt.shape, q: &write.Quant{Scale: []float32{0.02}, ZeroPoint: []int64{128}}}
			ct = ts{typ: schema.TensorTypeUint8, shape: ct.shape, q: &write.Quant{Scale: []float32{1.0 / 256}, ZeroPoint: []int64{0}}}
		}
		boxes := sg.AddTensor(bt.tensor("box_encodings"))
		classes := sg.AddTensor(ct.tensor("class_predictions"))
		a := c.anchors
		if a == nil {
			a = anchors(c.boxes)
		}
		at := f32(nb, 4).withF32(a...)
		if c.uint8In {
			// The runtime reads the anchors with the box encodings' type, so quantized models
			// quantize them too.
			q := make([]byte, len(a))
			for i, v := range a {
				q[i] = byte(math.Round(float64(v) * 256))
			}
			at = ts{typ: schema.TensorTypeUint8, shape: at.shape, q: &write.Quant{Scale: []float32{1.0 / 256}, ZeroPoint: []int64{0}}, data: q}
		}
		anc := sg.AddTensor(at.tensor("anchors"))
		d := int32(c.maxDetections * c.perDetection)
		outs := []int32{
			sg.AddTensor(f32(1, d, 4).tensor("detection_boxes")),
			sg.AddTensor(f32(1, d).tensor("detection_classes")),
			sg.AddTensor(f32(1, d).tensor("detection_scores")),
			sg.AddTensor(f32(1).tensor("num_detections")),
		}
		sg.AddCustomOp("TFLite_Detection_PostProcess", 1, []int32{boxes, classes, anc}, outs, opts)
		sg.SetInputs(boxes, classes)
		sg.SetOutputs(outs...)
		return m.Bytes()
	}
}

// detOpts is the options map the converter writes, with the usual SSD scales.
func detOpts(maxDet, perDet, numClasses int, regular bool, score, iou float64, extra ...flexbuf.Entry) []flexbuf.Entry {
	return append([]flexbuf.Entry{
		{Key: "max_detections", Value: maxDet}, {Key: "max_classes_per_detection", Value: perDet},
		{Key: "num_classes", Value: numClasses}, {Key: "use_regular_nms", Value: regular},
		{Key: "nms_score_threshold", Value: score}, {Key: "nms_iou_threshold", Value: iou},
		{Key: "y_scale", Value: 10.0}, {Key: "x_scale", Value: 10.0}, {Key: "h_scale", Value: 5.0}, {Key: "w_scale", Value: 5.0},
	}, extra...)
}

func detectionCases() []oracletest.OpCase {
	dc := []detCase{
		{name: "fast_3classes_bg_max5", boxes: 20, classes: 4, numClasses: 3, maxDetections: 5, perDetection: 1,
			opts: detOpts(5, 1, 3, false, 0.0, 0.5)},
		{name: "fast_4classes_2per_box_max4", boxes: 16, classes: 4, numClasses: 4, maxDetections: 4, perDetection: 2,
			opts: detOpts(4, 2, 4, false, 0.2, 0.6)},
		{name: "fast_1class_bg_iou03_max10", boxes: 25, classes: 2, numClasses: 1, maxDetections: 10, perDetection: 1,
			opts: detOpts(10, 1, 1, false, -0.5, 0.3)},
		{name: "fast_2classes_thresh08_max8", boxes: 16, classes: 2, numClasses: 2, maxDetections: 8, perDetection: 1,
			opts: detOpts(8, 1, 2, false, 0.8, 0.5)},
		// Quantized SSD outputs: uint8 inputs dequantized by the op (scores may tie here).
		{name: "fast_uint8_2classes_bg_max4", boxes: 9, classes: 3, numClasses: 2, maxDetections: 4, perDetection: 1, uint8In: true,
			opts: detOpts(4, 1, 2, false, 0.3, 0.5)},
		{name: "regular_uint8_2classes_bg_max4", boxes: 9, classes: 3, numClasses: 2, maxDetections: 4, perDetection: 1, uint8In: true,
			opts: detOpts(4, 1, 2, true, 0.3, 0.5, flexbuf.Entry{Key: "detections_per_class", Value: 4})},
		{name: "regular_3classes_bg_max6_per3", boxes: 20, classes: 4, numClasses: 3, maxDetections: 6, perDetection: 1,
			opts: detOpts(6, 1, 3, true, 0.1, 0.5, flexbuf.Entry{Key: "detections_per_class", Value: 3})},
		{name: "regular_1class_bg_thresh05_max10", boxes: 16, classes: 2, numClasses: 1, maxDetections: 10, perDetection: 1,
			opts: detOpts(10, 1, 1, true, 0.5, 0.5, flexbuf.Entry{Key: "detections_per_class", Value: 10})},
		{name: "regular_6classes_max3_default_per_class", boxes: 12, classes: 6, numClasses: 6, maxDetections: 3, perDetection: 1,
			opts: detOpts(3, 1, 6, true, 0.0, 0.3)},
		{name: "regular_2classes_bg_all_kept_max20", boxes: 9, classes: 3, numClasses: 2, maxDetections: 20, perDetection: 1,
			opts: detOpts(20, 1, 2, true, -1.0, 1.0, flexbuf.Entry{Key: "detections_per_class", Value: 100})},
	}
	r := kernels.Builtins()
	var cases []oracletest.OpCase
	for _, c := range dc {
		oc := oracletest.OpCase{Name: c.name, Build: detectionModel(c), Resolver: r}
		if c.perDetection > 1 && strings.HasPrefix(c.name, "fast_") {
			// TFLite Micro's fast NMS counts every (box, class) pair as a detection (8 where the
			// full runtime reports 4 boxes with 2 classes each) and orders them differently;
			// the custom op is the full runtime's, so it judges.
			oc.NotMicro = "TFLite Micro's fast NMS with several classes per detection differs from the full runtime's"
		}
		cases = append(cases, oc)
	}
	return cases
}

func TestDetectionPostProcessOracle(t *testing.T) {
	oracletest.RunOpCases(t, detectionDir, detectionCases())
}

func TestDetectionPostProcessZeroAllocs(t *testing.T) {
	oracletest.RunAllocCases(t, detectionCases(), func(ip *tflite.Interpreter) {
		rng := xorshift(3)
		for i := 0; i < ip.NumInputs(); i++ {
			in := ip.Input(i).Float32()
			for j := range in {
				in[j] = float32(int32(rng.next())) / (1 << 31)
			}
		}
	})
}

func TestDetectionPostProcessRejects(t *testing.T) {
	base := detCase{name: "bad", boxes: 4, classes: 3, numClasses: 2, maxDetections: 2, perDetection: 1}
	with := func(mod func(*detCase)) func() ([]byte, error) {
		c := base
		c.opts = detOpts(2, 1, 2, false, 0, 0.5)
		mod(&c)
		return detectionModel(c)
	}
	set := func(key string, v any) func(*detCase) {
		return func(c *detCase) {
			for i := range c.opts {
				if c.opts[i].Key == key {
					c.opts[i].Value = v
				}
			}
		}
	}
	runRejects(t, []rejectCase{
		{"iou zero", with(set("nms_iou_threshold", 0.0)), "nms_iou_threshold 0"},
		{"iou above one", with(set("nms_iou_threshold", 1.5)), "want in (0, 1]"},
		{"no classes", with(set("num_classes", 0)), "num_classes 0"},
		{"two background columns", with(set("num_classes", 1)), "3 columns for 1 classes"},
		{"too many classes", with(set("num_classes", 5)), "3 columns for 5 classes"},
		{"negative max detections", with(set("max_detections", -1)), "max_detections -1"},
		{"zero classes per detection", with(set("max_classes_per_detection", 0)), "max_classes_per_detection 0"},
		{"zero scale", with(set("h_scale", 0.0)), "must not be 0"},
		{"regular zero per class", with(func(c *detCase) {
			c.opts = detOpts(2, 1, 2, true, 0, 0.5, flexbuf.Entry{Key: "detections_per_class", Value: 0})
		}), "detections_per_class 0"},
		{"bad options", func() ([]byte, error) {
			m := write.NewModel("bad options")
			sg := m.Subgraph()
			in := []int32{sg.AddTensor(f32(1, 4, 4).tensor("b")), sg.AddTensor(f32(1, 4, 3).tensor("c")), sg.AddTensor(f32(4, 4).withF32(anchors(4)...).tensor("a"))}
			var outs []int32
			for i, s := range [][]int32{{1, 2, 4}, {1, 2}, {1, 2}, {1}} {
				outs = append(outs, sg.AddTensor(f32(s...).tensor(strings.Repeat("o", i+1))))
			}
			sg.AddCustomOp("TFLite_Detection_PostProcess", 1, in, outs, []byte{1, 2, 3, 4, 5})
			sg.SetInputs(in[0], in[1])
			sg.SetOutputs(outs...)
			return m.Bytes()
		}, "options: flexbuffer"},
	})
}

// TestDetectionInvertedAnchor: a decoded box with inverted corners (from a negative anchor
// size) fails Invoke with one line, as the runtime's ValidateBoxes does; with all-zero inputs
// and threshold 0 every box scores 0 and NMS keeps the limit.
func TestDetectionInvertedAnchor(t *testing.T) {
	c := detCase{name: "inverted", boxes: 4, classes: 3, numClasses: 2, maxDetections: 2, perDetection: 1, opts: detOpts(2, 1, 2, false, 0, 0.5)}
	ip := opInterpreter(t, detectionModel(c))
	if err := ip.Invoke(); err != nil {
		t.Fatalf("Invoke with zero inputs: %v", err)
	}
	if got := ip.Output(3).Float32()[0]; got != 2 {
		t.Errorf("num_detections = %v with all-zero scores at threshold 0, want 2", got)
	}
	c.anchors = anchors(4)
	c.anchors[2*4+2] = -0.5 // box 2: negative height
	ip = opInterpreter(t, detectionModel(c))
	err := ip.Invoke()
	if err == nil || !strings.Contains(err.Error(), "decoded box 2 is inverted") || strings.Contains(err.Error(), "\n") {
		t.Errorf("Invoke error %v, want one line naming the inverted box 2", err)
	}
}

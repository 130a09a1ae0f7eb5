package kernels

import (
	"fmt"
	"math"
	"slices"

	"github.com/outpost-ml/outpost/models/tensor"
	"github.com/outpost-ml/outpost/models/tflite"
	"github.com/outpost-ml/outpost/models/tflite/flexbuf"
)

// TFLite_Detection_PostProcess is the custom op every SSD-style detector ends with, and one
// the full runtime registers by default: it decodes box encodings against anchors (center-size
// encoding with the y/x/h/w scales) and runs non-max suppression, either per class ("regular")
// or once on each box's best class ("fast"). Options arrive as a FlexBuffers map in the
// custom options. The arithmetic follows kernels/detection_postprocess.cc of the full runtime;
// where it sorts with std::partial_sort (unstable), this sorts stably (ties keep box order),
// as TFLite's later versions do so that TFLite and TFLite Micro agree.

const detectionPostProcess = "TFLite_Detection_PostProcess"

func init() {
	register(func(r *Resolver) {
		r.AddCustom(detectionPostProcess, tflite.KernelFuncs{InitFn: initDetection, PrepareFn: prepareDetection, EvalFn: evalDetection})
	})
}

// detectionOptions are the op's FlexBuffers options (missing keys read as 0, except
// detections_per_class, 100, and use_regular_nms, false, as in the runtime).
type detectionOptions struct {
	maxDetections, maxClassesPerDetection, detectionsPerClass, numClasses int
	regular                                                               bool
	scoreThreshold, iouThreshold                                          float32
	yScale, xScale, hScale, wScale                                        float32
}

type detectionData struct {
	o                         detectionOptions
	numBoxes, boxLen, classes int // classes: columns of class_predictions (num_classes + background)
	labelOffset               int
	perClassOut               int // max_detections × max_classes_per_detection: output rows

	// Buffers sized in Prepare so Eval allocates nothing.
	decoded                 []float32 // numBoxes × [ymin, xmin, ymax, xmax]
	scores                  []float32 // dequantized class predictions (nil when float32)
	classScores, keepScores []float32
	keepIdx, sorted         []int
	active                  []bool
	selected                []int
	// regular NMS
	candIdx    []int
	candScores []float32
	tmpIdx     []int
	tmpScores  []float32
	// fast NMS
	maxScores  []float32
	classOrder []int
}

func clampInt(v int64) int {
	return int(max(min(v, math.MaxInt32), math.MinInt32))
}

func initDetection(n *tflite.Node) (any, error) {
	m, err := flexbuf.DecodeMap(n.CustomOptions)
	if err != nil {
		return nil, fmt.Errorf("options: %w", err)
	}
	o := detectionOptions{
		maxDetections:          clampInt(m["max_detections"].Int()),
		maxClassesPerDetection: clampInt(m["max_classes_per_detection"].Int()),
		detectionsPerClass:     100,
		numClasses:             clampInt(m["num_classes"].Int()),
		regular:                m["use_regular_nms"].Bool(),
		scoreThreshold:         float32(m["nms_score_threshold"].Float()),
		iouThreshold:           float32(m["nms_iou_threshold"].Float()),
		yScale:                 float32(m["y_scale"].Float()),
		xScale:                 float32(m["x_scale"].Float()),
		hScale:                 float32(m["h_scale"].Float()),
		wScale:                 float32(m["w_scale"].Float()),
	}
	if v := m["detections_per_class"]; !v.IsNull() {
		o.detectionsPerClass = clampInt(v.Int())
	}
	return &detectionData{o: o}, nil
}

// detectionLimit bounds the buffers one node may ask for (boxes × classes and output rows), so
// a hostile model cannot make Prepare allocate without bound.
const detectionLimit = 1 << 24

// prepareDetection: inputs box_encodings [1, boxes, ≥4], class_predictions [1, boxes,
// num_classes (+1 background)], anchors [boxes, 4] (float32, or uint8/int8 quantized); outputs
// detection_boxes [1, D, 4], detection_classes [1, D], detection_scores [1, D], num_detections
// [1], all float32, with D = max_detections × max_classes_per_detection.
func prepareDetection(n *tflite.Node) error {
	if err := n.CheckIO(3, 3, 4); err != nil {
		return err
	}
	d := n.Data.(*detectionData)
	o := &d.o
	boxes, classes, anchors := n.Input(0), n.Input(1), n.Input(2)
	switch {
	case o.numClasses <= 0:
		return fmt.Errorf("num_classes %d, want > 0", o.numClasses)
	case o.maxDetections < 0:
		return fmt.Errorf("max_detections %d, want >= 0", o.maxDetections)
	case o.maxClassesPerDetection <= 0:
		return fmt.Errorf("max_classes_per_detection %d, want > 0", o.maxClassesPerDetection)
	case o.regular && o.detectionsPerClass <= 0:
		return fmt.Errorf("detections_per_class %d, want > 0", o.detectionsPerClass)
	case !(o.iouThreshold > 0 && o.iouThreshold <= 1):
		return fmt.Errorf("nms_iou_threshold %v, want in (0, 1]", o.iouThreshold)
	case o.yScale == 0 || o.xScale == 0 || o.hScale == 0 || o.wScale == 0:
		return fmt.Errorf("y/x/h/w scales %v/%v/%v/%v must not be 0", o.yScale, o.xScale, o.hScale, o.wScale)
	}
	if boxes.Rank() != 3 || boxes.Dim(0) != 1 || boxes.Dim(2) < 4 {
		return fmt.Errorf("box encodings %q are %v, want [1 boxes >=4]", boxes.Name(), boxes.Shape())
	}
	d.numBoxes, d.boxLen = boxes.Dim(1), boxes.Dim(2)
	if classes.Rank() != 3 || classes.Dim(0) != 1 || classes.Dim(1) != d.numBoxes {
		return fmt.Errorf("class predictions %q are %v, want [1 %d classes]", classes.Name(), classes.Shape(), d.numBoxes)
	}
	d.classes = classes.Dim(2)
	d.labelOffset = d.classes - o.numClasses
	if d.labelOffset < 0 || d.labelOffset > 1 {
		return fmt.Errorf("class predictions have %d columns for %d classes (want num_classes or one more for the background)", d.classes, o.numClasses)
	}
	if anchors.Rank() != 2 || anchors.Dim(0) != d.numBoxes || anchors.Dim(1) != 4 {
		return fmt.Errorf("anchors %q are %v, want [%d 4]", anchors.Name(), anchors.Shape(), d.numBoxes)
	}
	for _, t := range []*tensor.Tensor{boxes, classes, anchors} {
		if err := detectionInputType(t); err != nil {
			return err
		}
	}
	if d.numBoxes*d.classes > detectionLimit || o.maxDetections > detectionLimit/o.maxClassesPerDetection {
		return fmt.Errorf("%d boxes × %d classes, %d × %d detections: over the limit of %d", d.numBoxes, d.classes, o.maxDetections, o.maxClassesPerDetection, detectionLimit)
	}
	d.perClassOut = o.maxDetections * o.maxClassesPerDetection
	outShapes := [][]int{{1, d.perClassOut, 4}, {1, d.perClassOut}, {1, d.perClassOut}, {1}}
	for i, s := range outShapes {
		out := n.Output(i)
		if out.DType() != tensor.Float32 {
			return fmt.Errorf("output %d %q is %s, want float32", i, out.Name(), out.DType())
		}
		if err := setOutShape(out, s); err != nil {
			return err
		}
	}
	nb := d.numBoxes
	d.decoded = make([]float32, 4*nb)
	if classes.DType() != tensor.Float32 {
		d.scores = make([]float32, nb*d.classes)
	}
	d.classScores, d.keepScores = make([]float32, nb), make([]float32, 0, nb)
	d.keepIdx, d.sorted = make([]int, 0, nb), make([]int, nb)
	d.active, d.selected = make([]bool, nb), make([]int, 0, nb)
	if o.regular {
		// Candidates: those kept from earlier classes (at most max_detections, and at most
		// every box of every class) plus this class's (at most every box). Sized by the
		// inputs, not by max_detections, which a model may set far above them.
		c := nb + min(o.maxDetections, nb*o.numClasses)
		d.candIdx, d.candScores = make([]int, c), make([]float32, c)
		d.tmpIdx, d.tmpScores = make([]int, c), make([]float32, c)
	} else {
		d.maxScores, d.classOrder = make([]float32, nb), make([]int, nb*o.numClasses)
	}
	return nil
}

func detectionInputType(t *tensor.Tensor) error {
	switch t.DType() {
	case tensor.Float32:
		return nil
	case tensor.Uint8, tensor.Int8:
		if _, _, err := perTensor(t); err != nil {
			return err
		}
		return nil
	}
	return fmt.Errorf("input %q is %s, want float32, uint8 or int8", t.Name(), t.DType())
}

// at reads element i of a float32 or quantized input as float32: scale × (q − zero point),
// in float32 as the runtime's Dequantize helper.
func at(t *tensor.Tensor, i int) float32 {
	switch t.DType() {
	case tensor.Uint8:
		q := t.Quant()
		return q.Scale[0] * (float32(t.Uint8()[i]) - float32(q.ZeroPoint[0]))
	case tensor.Int8:
		q := t.Quant()
		return q.Scale[0] * (float32(t.Int8()[i]) - float32(q.ZeroPoint[0]))
	}
	return t.Float32()[i]
}

func evalDetection(n *tflite.Node) error {
	d := n.Data.(*detectionData)
	boxes, classes, anchors := n.Input(0), n.Input(1), n.Input(2)
	if err := d.decode(boxes, anchors); err != nil {
		return err
	}
	scores := classes.Float32()
	if d.scores != nil {
		for i := range d.scores {
			d.scores[i] = at(classes, i)
		}
		scores = d.scores
	}
	outBoxes, outClasses, outScores := n.Output(0).Float32(), n.Output(1).Float32(), n.Output(2).Float32()
	// Rows no detection fills read 0 (the runtime's regular path writes zeros there; its fast
	// path leaves whatever the arena held).
	clear(outBoxes)
	clear(outClasses)
	clear(outScores)
	var count int
	if d.o.regular {
		count = d.regularNMS(scores, outBoxes, outClasses, outScores)
	} else {
		count = d.fastNMS(scores, outBoxes, outClasses, outScores)
	}
	n.Output(3).Float32()[0] = float32(count)
	return nil
}

// decode is DecodeCenterSizeBoxes: center-size encodings relative to the anchors, scaled,
// formed in float64 and rounded to float32 once, as the runtime does.
func (d *detectionData) decode(boxes, anchors *tensor.Tensor) error {
	o := &d.o
	for i := 0; i < d.numBoxes; i++ {
		b := i * d.boxLen
		by, bx, bh, bw := float64(at(boxes, b)), float64(at(boxes, b+1)), float64(at(boxes, b+2)), float64(at(boxes, b+3))
		ay, ax, ah, aw := float64(at(anchors, 4*i)), float64(at(anchors, 4*i+1)), float64(at(anchors, 4*i+2)), float64(at(anchors, 4*i+3))
		yc := float32(by/float64(o.yScale)*ah + ay)
		xc := float32(bx/float64(o.xScale)*aw + ax)
		hh := float32(0.5 * math.Exp(bh/float64(o.hScale)) * ah)
		hw := float32(0.5 * math.Exp(bw/float64(o.wScale)) * aw)
		box := d.decoded[4*i : 4*i+4]
		box[0], box[1], box[2], box[3] = yc-hh, xc-hw, yc+hh, xc+hw
		// ValidateBoxes: an inverted box (a negative anchor size) is an error; NaN passes.
		if box[0] > box[2] || box[1] > box[3] {
			return fmt.Errorf("decoded box %d is inverted: %v (anchor %v)", i, box, []float64{ay, ax, ah, aw})
		}
	}
	return nil
}

// iou is ComputeIntersectionOverUnion of decoded boxes i and j (0 when either has no area).
func (d *detectionData) iou(i, j int) float32 {
	a, b := d.decoded[4*i:4*i+4], d.decoded[4*j:4*j+4]
	areaA := (a[2] - a[0]) * (a[3] - a[1])
	areaB := (b[2] - b[0]) * (b[3] - b[1])
	if areaA <= 0 || areaB <= 0 {
		return 0
	}
	ymin, xmin := max(a[0], b[0]), max(a[1], b[1])
	ymax, xmax := min(a[2], b[2]), min(a[3], b[3])
	inter := max(ymax-ymin, 0) * max(xmax-xmin, 0)
	return inter / (areaA + areaB - inter)
}

// nmsSingleClass is NonMaxSuppressionSingleClassHelper: boxes scoring at least the threshold,
// in decreasing score order, each suppressing later boxes that overlap it by more than the IoU
// threshold, at most maxDet of them. It returns box indices (into d.selected).
func (d *detectionData) nmsSingleClass(scores []float32, maxDet int) []int {
	d.keepScores, d.keepIdx = d.keepScores[:0], d.keepIdx[:0]
	for i, s := range scores {
		if s >= d.o.scoreThreshold {
			d.keepScores = append(d.keepScores, s)
			d.keepIdx = append(d.keepIdx, i)
		}
	}
	kept := len(d.keepIdx)
	order := d.sorted[:kept]
	decreasingArgSort(d.keepScores, order)
	outSize := min(kept, maxDet)
	sel := d.selected[:0]
	active := d.active[:kept]
	for i := range active {
		active[i] = true
	}
	numActive := kept
	for i := 0; i < kept; i++ {
		if numActive == 0 || len(sel) >= outSize {
			break
		}
		if !active[i] {
			continue
		}
		bi := d.keepIdx[order[i]]
		sel = append(sel, bi)
		active[i] = false
		numActive--
		for j := i + 1; j < kept; j++ {
			if active[j] && d.iou(bi, d.keepIdx[order[j]]) > d.o.iouThreshold {
				active[j] = false
				numActive--
			}
		}
	}
	d.selected = sel
	return sel
}

// decreasingArgSort fills idx with 0..len-1 ordered by decreasing values, ties by index.
func decreasingArgSort(values []float32, idx []int) {
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		switch {
		case values[a] > values[b]:
			return -1
		case values[a] < values[b]:
			return 1
		}
		return 0
	})
}

func (d *detectionData) emit(row, box, class int, score float32, outBoxes, outClasses, outScores []float32) {
	copy(outBoxes[4*row:4*row+4], d.decoded[4*box:4*box+4])
	outClasses[row] = float32(class)
	outScores[row] = score
}

// regularNMS is NonMaxSuppressionMultiClassRegularHelper: NMS per class, keeping the
// max_detections best of all classes.
func (d *detectionData) regularNMS(scores, outBoxes, outClasses, outScores []float32) int {
	o := &d.o
	size := 0
	for col := 0; col < o.numClasses; col++ {
		for row := 0; row < d.numBoxes; row++ {
			d.classScores[row] = scores[row*d.classes+col+d.labelOffset]
		}
		sel := d.nmsSingleClass(d.classScores, o.detectionsPerClass)
		out := size
		for _, bi := range sel {
			d.candIdx[out] = bi*d.classes + col + d.labelOffset
			d.candScores[out] = d.classScores[bi]
			out++
		}
		keep := min(out, o.maxDetections)
		order := d.tmpIdx[:out]
		decreasingArgSort(d.candScores[:out], order)
		for r := 0; r < keep; r++ {
			d.tmpScores[r] = d.candScores[order[r]]
			order[r] = d.candIdx[order[r]]
		}
		copy(d.candIdx[:keep], order[:keep])
		copy(d.candScores[:keep], d.tmpScores[:keep])
		size = keep
	}
	for r := 0; r < size; r++ {
		anchor := d.candIdx[r] / d.classes
		class := d.candIdx[r] - anchor*d.classes - d.labelOffset
		d.emit(r, anchor, class, d.candScores[r], outBoxes, outClasses, outScores)
	}
	return size
}

// fastNMS is NonMaxSuppressionMultiClassFastHelper: each box's classes ranked, NMS once on
// the boxes' best scores, then up to max_classes_per_detection classes per selected box.
func (d *detectionData) fastNMS(scores, outBoxes, outClasses, outScores []float32) int {
	o := &d.o
	perAnchor := min(o.maxClassesPerDetection, o.numClasses)
	for row := 0; row < d.numBoxes; row++ {
		bs := scores[row*d.classes+d.labelOffset : row*d.classes+d.labelOffset+o.numClasses]
		order := d.classOrder[row*o.numClasses : (row+1)*o.numClasses]
		decreasingArgSort(bs, order)
		d.maxScores[row] = bs[order[0]]
	}
	sel := d.nmsSingleClass(d.maxScores, o.maxDetections)
	for k, bi := range sel {
		bs := scores[bi*d.classes+d.labelOffset:]
		order := d.classOrder[bi*o.numClasses : (bi+1)*o.numClasses]
		for col := 0; col < perAnchor; col++ {
			d.emit(o.maxClassesPerDetection*k+col, bi, order[col], bs[order[col]], outBoxes, outClasses, outScores)
		}
	}
	return len(sel)
}

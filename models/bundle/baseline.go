package bundle

import "fmt"

// ComputeBaseline summarises training data for the manifest. windows holds raw (not
// normalised) input windows, samples in time order with the channels of one instant
// adjacent, as the agent assembles them; outputs holds the model's real-valued output for
// each window (dequantized for integer models); outputNames names each output value.
func ComputeBaseline(source string, channels []string, windows, outputs [][]float64, outputNames []string) (*Baseline, error) {
	nc := len(channels)
	switch {
	case nc == 0:
		return nil, fmt.Errorf("baseline: no channels")
	case len(windows) == 0:
		return nil, fmt.Errorf("baseline: no windows")
	case len(outputs) != len(windows):
		return nil, fmt.Errorf("baseline: %d outputs for %d windows", len(outputs), len(windows))
	}
	perChannel := make([][]float64, nc)
	for i, w := range windows {
		if len(w) == 0 || len(w)%nc != 0 {
			return nil, fmt.Errorf("baseline: window %d has %d values, not a multiple of %d channels", i, len(w), nc)
		}
		for j, v := range w {
			perChannel[j%nc] = append(perChannel[j%nc], v)
		}
	}
	perOutput := make([][]float64, len(outputNames))
	for i, o := range outputs {
		if len(o) != len(outputNames) {
			return nil, fmt.Errorf("baseline: output %d has %d values, want %d", i, len(o), len(outputNames))
		}
		for j, v := range o {
			perOutput[j] = append(perOutput[j], v)
		}
	}
	b := &Baseline{Source: source, Windows: len(windows)}
	for i, c := range channels {
		f, err := NewFeatureBaseline(c, perChannel[i])
		if err != nil {
			return nil, err
		}
		b.Inputs = append(b.Inputs, f)
	}
	for i, n := range outputNames {
		f, err := NewFeatureBaseline(n, perOutput[i])
		if err != nil {
			return nil, err
		}
		b.Outputs = append(b.Outputs, f)
	}
	return b, nil
}

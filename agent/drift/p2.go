package drift

// p2 estimates one quantile of a stream in constant memory with the P² algorithm (Jain and
// Chlamtac, "The P² algorithm for dynamic calculation of quantiles and histograms without
// storing observations", CACM 28(10), 1985): five markers whose heights are adjusted by
// piecewise-parabolic interpolation as values arrive. No allocation, O(1) per value.
type p2 struct {
	p     float64
	count int64
	q     [5]float64 // marker heights
	n     [5]float64 // actual marker positions, 1-based
	np    [5]float64 // desired marker positions
	dn    [5]float64 // desired position increments per value
}

func (e *p2) reset(p float64) {
	*e = p2{p: p, dn: [5]float64{0, p / 2, p, (1 + p) / 2, 1}}
}

func (e *p2) add(x float64) {
	if e.count < 5 {
		// Insertion sort the first five values into the markers.
		i := int(e.count)
		for i > 0 && e.q[i-1] > x {
			e.q[i] = e.q[i-1]
			i--
		}
		e.q[i] = x
		e.count++
		if e.count == 5 {
			p := e.p
			e.n = [5]float64{1, 2, 3, 4, 5}
			e.np = [5]float64{1, 1 + 2*p, 1 + 4*p, 3 + 2*p, 5}
		}
		return
	}
	e.count++
	var k int
	switch {
	case x < e.q[0]:
		e.q[0], k = x, 0
	case x < e.q[1]:
		k = 0
	case x < e.q[2]:
		k = 1
	case x < e.q[3]:
		k = 2
	case x <= e.q[4]:
		k = 3
	default:
		e.q[4], k = x, 3
	}
	for i := k + 1; i < 5; i++ {
		e.n[i]++
	}
	for i := range e.np {
		e.np[i] += e.dn[i]
	}
	for i := 1; i <= 3; i++ {
		d := e.np[i] - e.n[i]
		if (d >= 1 && e.n[i+1]-e.n[i] > 1) || (d <= -1 && e.n[i-1]-e.n[i] < -1) {
			s := 1.0
			if d < 0 {
				s = -1
			}
			h := e.parabolic(i, s)
			if !(e.q[i-1] < h && h < e.q[i+1]) {
				h = e.linear(i, s)
			}
			e.q[i] = h
			e.n[i] += s
		}
	}
}

func (e *p2) parabolic(i int, s float64) float64 {
	q, n := &e.q, &e.n
	return q[i] + s/(n[i+1]-n[i-1])*((n[i]-n[i-1]+s)*(q[i+1]-q[i])/(n[i+1]-n[i])+
		(n[i+1]-n[i]-s)*(q[i]-q[i-1])/(n[i]-n[i-1]))
}

func (e *p2) linear(i int, s float64) float64 {
	j := i + int(s)
	return e.q[i] + s*(e.q[j]-e.q[i])/(e.n[j]-e.n[i])
}

// value is the current estimate: the middle marker, or for fewer than five values the
// nearest-rank quantile of those seen (0 for none).
func (e *p2) value() float64 {
	switch {
	case e.count == 0:
		return 0
	case e.count < 5:
		i := int(e.p*float64(e.count-1) + 0.5)
		return e.q[min(i, int(e.count)-1)]
	}
	return e.q[2]
}

package dataset

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"
)

// The NumPy .npy format, version 1.0 (numpy.lib.format): the magic "\x93NUMPY", major 1,
// minor 0, a little-endian uint16 header length, then an ASCII Python dict literal with the
// keys 'descr', 'fortran_order' and 'shape', padded with spaces and ended by '\n' so that the
// data starts at a multiple of 64 bytes; then the array's values in C order. Only
// little-endian float32 ('<f4') is written and read here.

var npyMagic = []byte("\x93NUMPY")

// MaxNPYValues bounds what ReadNPY accepts (1 GiB of float32).
const MaxNPYValues = 1 << 28

// WriteNPY writes data, of the given shape, as a version 1.0 .npy file of '<f4'.
func WriteNPY(w io.Writer, shape []int, data []float32) error {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return fmt.Errorf("npy: negative dimension in shape %v", shape)
		}
		n *= d
	}
	if n != len(data) {
		return fmt.Errorf("npy: %d values for shape %v", len(data), shape)
	}
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = strconv.Itoa(d)
	}
	tuple := strings.Join(dims, ", ")
	if len(shape) == 1 {
		tuple += ","
	}
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", tuple)
	// Pad so that magic(6) + version(2) + length(2) + header + '\n' is a multiple of 64.
	total := 10 + len(header) + 1
	pad := (64 - total%64) % 64
	header += strings.Repeat(" ", pad) + "\n"
	if len(header) > math.MaxUint16 {
		return fmt.Errorf("npy: header of %d bytes", len(header))
	}
	var buf bytes.Buffer
	buf.Write(npyMagic)
	buf.Write([]byte{1, 0})
	_ = binary.Write(&buf, binary.LittleEndian, uint16(len(header)))
	buf.WriteString(header)
	if _, err := w.Write(buf.Bytes()); err != nil {
		return err
	}
	out := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
	}
	_, err := w.Write(out)
	return err
}

var (
	npyDescr   = regexp.MustCompile(`'descr':\s*'([^']*)'`)
	npyFortran = regexp.MustCompile(`'fortran_order':\s*(True|False)`)
	npyShape   = regexp.MustCompile(`'shape':\s*\(([^)]*)\)`)
)

// ErrNPY is wrapped by ReadNPY's errors about the file's content.
var ErrNPY = errors.New("bad npy file")

// ReadNPY reads a version 1.0 or 2.0 .npy file of little-endian float32 in C order and returns
// its shape and values.
func ReadNPY(r io.Reader) (shape []int, data []float32, err error) {
	var pre [8]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrNPY, err)
	}
	if !bytes.Equal(pre[:6], npyMagic) {
		return nil, nil, fmt.Errorf("%w: no NUMPY magic", ErrNPY)
	}
	var hlen int
	switch pre[6] {
	case 1:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrNPY, err)
		}
		hlen = int(binary.LittleEndian.Uint16(b[:]))
	case 2:
		var b [4]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrNPY, err)
		}
		hlen = int(binary.LittleEndian.Uint32(b[:]))
		if hlen > 1<<16 {
			return nil, nil, fmt.Errorf("%w: header of %d bytes", ErrNPY, hlen)
		}
	default:
		return nil, nil, fmt.Errorf("%w: version %d.%d", ErrNPY, pre[6], pre[7])
	}
	hb := make([]byte, hlen)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, nil, fmt.Errorf("%w: header: %v", ErrNPY, err)
	}
	h := string(hb)
	d := npyDescr.FindStringSubmatch(h)
	if d == nil || (d[1] != "<f4" && d[1] != "float32") {
		return nil, nil, fmt.Errorf("%w: dtype %q (want '<f4')", ErrNPY, strings.TrimSpace(h))
	}
	if f := npyFortran.FindStringSubmatch(h); f == nil || f[1] != "False" {
		return nil, nil, fmt.Errorf("%w: not C order", ErrNPY)
	}
	s := npyShape.FindStringSubmatch(h)
	if s == nil {
		return nil, nil, fmt.Errorf("%w: no shape", ErrNPY)
	}
	n := 1
	for _, f := range strings.Split(s[1], ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		v, err := strconv.Atoi(f)
		if err != nil || v < 0 || v > MaxNPYValues {
			return nil, nil, fmt.Errorf("%w: shape (%s)", ErrNPY, s[1])
		}
		shape = append(shape, v)
		if n *= v; n > MaxNPYValues {
			return nil, nil, fmt.Errorf("%w: more than %d values", ErrNPY, MaxNPYValues)
		}
	}
	if len(shape) == 0 || len(shape) > 8 {
		return nil, nil, fmt.Errorf("%w: shape (%s)", ErrNPY, s[1])
	}
	// Read what is there rather than allocating what the header claims: a short file fails
	// without a huge allocation.
	raw, err := io.ReadAll(io.LimitReader(r, int64(4*n)))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrNPY, err)
	}
	if len(raw) != 4*n {
		return nil, nil, fmt.Errorf("%w: %d bytes of data for %d values", ErrNPY, len(raw), n)
	}
	data = make([]float32, n)
	for i := range data {
		data[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return shape, data, nil
}

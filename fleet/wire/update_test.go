package wire

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestBlockRoundTrip(t *testing.T) {
	data := bytes.Repeat([]byte{7}, 5000)
	for _, b := range []Block{
		{Status: BlockOK, ID: 9, Index: 0, Size: 5000, BlockSize: MinBlockSize, Path: "targets/ab.m.opkg", Data: data[:MinBlockSize]},
		{Status: BlockOK, ID: 9, Index: 1, Size: 5000, BlockSize: MinBlockSize, Path: "targets/ab.m.opkg", Data: data[MinBlockSize:]},
		{Status: BlockNotFound, ID: 1, Path: "meta/9.root.json", Data: []byte("no such file")},
	} {
		got, err := DecodeBlock(EncodeBlock(nil, &b))
		if err != nil {
			t.Fatalf("DecodeBlock(EncodeBlock(%+v)): %v", b.Index, err)
		}
		if got.Status != b.Status || got.ID != b.ID || got.Index != b.Index || got.Size != b.Size ||
			got.BlockSize != b.BlockSize || got.Path != b.Path || !bytes.Equal(got.Data, b.Data) {
			t.Errorf("round trip of block %d changed it", b.Index)
		}
	}
}

func TestDecodeBlockRejects(t *testing.T) {
	ok := Block{Status: BlockOK, ID: 1, Index: 1, Size: 5000, BlockSize: MinBlockSize, Path: "p", Data: make([]byte, 5000-MinBlockSize)}
	frame := EncodeBlock(nil, &ok)
	for _, tc := range []struct {
		name  string
		frame []byte
		want  string
	}{
		{"short", frame[:10], "shorter than"},
		{"magic", append([]byte("XPB1"), frame[4:]...), "magic"},
		{"truncated data", frame[:len(frame)-1], "holds"},
		{"extra data", append(append([]byte{}, frame...), 0), "holds"},
		{"beyond end", EncodeBlock(nil, &Block{Status: BlockOK, Index: 2, Size: 5000, BlockSize: MinBlockSize, Data: []byte{1}}), "holds"},
		{"block size", EncodeBlock(nil, &Block{Status: BlockOK, Size: 10, BlockSize: 10, Data: make([]byte, 10)}), "block size"},
		{"status", EncodeBlock(nil, &Block{Status: 99}), "status"},
		{"long reason", EncodeBlock(nil, &Block{Status: BlockNotFound, Data: make([]byte, 2000)}), "reason"},
	} {
		_, err := DecodeBlock(tc.frame)
		if !errors.Is(err, ErrBlockFrame) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: DecodeBlock error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestFetchRequestValidate(t *testing.T) {
	for _, tc := range []struct {
		r    FetchRequest
		want string // "" means valid
	}{
		{FetchRequest{Path: "meta/timestamp.json"}, ""},
		{FetchRequest{Path: "targets/abc.m.opkg", BlockSize: DefaultBlockSize, Start: 16, Mask: 0xffff}, ""},
		{FetchRequest{Path: ""}, "path length"},
		{FetchRequest{Path: "etc/passwd"}, "must start"},
		{FetchRequest{Path: "meta/../x"}, "plain name"},
		{FetchRequest{Path: "meta/x", BlockSize: 100}, "block size"},
		{FetchRequest{Path: "meta/x", Mask: 0x1ffff}, "blocks asked"},
		{FetchRequest{Path: "meta/x", Start: 1<<32 - 1}, "out of range"},
	} {
		err := tc.r.Validate()
		if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want %q", tc.r, err, tc.want)
		}
	}
}

func FuzzDecodeBlock(f *testing.F) {
	f.Add(EncodeBlock(nil, &Block{Status: BlockOK, ID: 3, Size: 4096, BlockSize: MinBlockSize, Path: "meta/1.root.json", Data: make([]byte, 4096)}))
	f.Add(EncodeBlock(nil, &Block{Status: BlockRateLimited, Data: []byte("slow down")}))
	f.Fuzz(func(t *testing.T, frame []byte) {
		b, err := DecodeBlock(frame)
		if err != nil {
			return
		}
		again, err := DecodeBlock(EncodeBlock(nil, &b))
		if err != nil || again.Status != b.Status || again.Index != b.Index || again.Size != b.Size || !bytes.Equal(again.Data, b.Data) {
			t.Fatalf("re-encoding an accepted frame changed it: %v", err)
		}
	})
}

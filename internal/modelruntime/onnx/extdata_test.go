package onnx

import (
	"bytes"
	"encoding/binary"
	"os"
	"reflect"
	"strings"
	"testing"
)

// pb builds protobuf messages by hand: field appends a length-delimited field.
func field(num uint64, body []byte) []byte {
	b := binary.AppendUvarint(nil, num<<3|2)
	b = binary.AppendUvarint(b, uint64(len(body)))
	return append(b, body...)
}

func varintField(num, v uint64) []byte {
	return binary.AppendUvarint(binary.AppendUvarint(nil, num<<3), v)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// extTensor is a TensorProto with external data at loc.
func extTensor(loc string) []byte {
	return cat(
		field(8, []byte("w")),
		field(13, cat(field(1, []byte("location")), field(2, []byte(loc)))),
		field(13, cat(field(1, []byte("offset")), field(2, []byte("0")))),
		varintField(14, 1),
	)
}

func scan(t *testing.T, model []byte) ([]string, error) {
	t.Helper()
	s := scanner{r: bytes.NewReader(model), seen: map[string]bool{}}
	err := s.message(msgModel, 0, int64(len(model)), 0)
	return s.locs, err
}

func TestScannerFindsEveryTensor(t *testing.T) {
	raw := field(9, bytes.Repeat([]byte{7}, 200_000)) // raw_data larger than the window
	subgraph := field(5, extTensor("sub.bin"))
	model := cat(
		varintField(1, 8), // ir_version
		field(7, cat( // graph
			field(5, cat(field(8, []byte("big")), raw)),          // inline initializer
			field(5, extTensor("init.bin")),                      // initializer
			field(15, field(1, extTensor("sparse.bin"))),         // sparse_initializer.values
			field(1, field(5, field(5, extTensor("const.bin")))), // node.attribute.t (Constant)
			field(1, field(5, field(6, subgraph))),               // node.attribute.g (If branch)
			field(5, extTensor("init.bin")),                      // duplicate location
		)),
		field(25, field(7, field(5, field(10, extTensor("func.bin"))))), // function.node.attribute.tensors
		field(20, field(2, field(5, extTensor("train.bin")))),           // training_info.algorithm
	)
	locs, err := scan(t, model)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"init.bin", "sparse.bin", "const.bin", "sub.bin", "func.bin", "train.bin"}
	if !reflect.DeepEqual(locs, want) {
		t.Fatalf("got %v, want %v", locs, want)
	}
}

func TestScannerCorrupt(t *testing.T) {
	good := field(7, field(5, extTensor("w.bin")))
	tests := []struct {
		name string
		in   []byte
	}{
		{"truncated", good[:len(good)-3]},
		{"length past end", cat(binary.AppendUvarint(nil, 7<<3|2), binary.AppendUvarint(nil, 1<<40))},
		{"group wire type", []byte{7<<3 | 3}},
		{"bad varint", bytes.Repeat([]byte{0xff}, 11)},
		{"deep nesting", deep(100)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := scan(t, tt.in); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// deep nests graphs through If attributes n times.
func deep(n int) []byte {
	g := []byte{}
	for range n {
		g = field(1, field(5, field(6, g)))
	}
	return field(7, g)
}

func TestCheckLocation(t *testing.T) {
	dir := t.TempDir()
	touch(t, dir+"/w.bin")
	touch(t, dir+"/sub/w.bin")
	outside := touch(t, t.TempDir()+"/secret.bin")
	if err := os.Symlink(outside, dir+"/link.bin"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir+"/w.bin", dir+"/inner.bin"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		loc     string
		wantErr string
	}{
		{"w.bin", ""},
		{"sub/w.bin", ""},
		{"./sub/../w.bin", ""},
		{"../w.bin", "outside"},
		{"sub/../../w.bin", "outside"},
		{"/etc/passwd", "outside"},
		{"", "outside"},
		{"missing.bin", "no such file"},
		{"link.bin", "outside"},
		{"inner.bin", ""},
	}
	for _, tt := range tests {
		err := checkLocation(dir, tt.loc)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("checkLocation(%q) = %v, want %q", tt.loc, err, tt.wantErr)
		}
	}
}

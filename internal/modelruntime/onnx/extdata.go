package onnx

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// External data. An ONNX TensorProto may keep its bytes in a file named by its
// external_data "location" entry, resolved against the model's folder. A hostile
// model could point that at any file ("../../etc/shadow", an absolute path, or a
// symlink out of the folder). Before ORT sees the model, checkExternalData scans the
// protobuf (stdlib only, reading the file through a small window and seeking over
// large fields such as raw_data) for every TensorProto reachable from the model —
// initializers, sparse initializers, Constant and other node attributes, subgraphs,
// functions and training info — and refuses any location that is absolute, leaves the
// folder lexically, does not exist, or resolves (after symlinks) outside the folder.

// checkExternalData refuses models whose external data resolves outside their folder.
func checkExternalData(modelPath string) error {
	locs, err := externalLocations(modelPath)
	if err != nil {
		return err
	}
	dir := filepath.Dir(modelPath)
	for _, loc := range locs {
		if err := checkLocation(dir, loc); err != nil {
			return fmt.Errorf("external data %q: %w", loc, err)
		}
	}
	return nil
}

var errOutside = errors.New("refusing external data outside the model's folder")

func checkLocation(dir, loc string) error {
	if !filepath.IsLocal(loc) {
		return errOutside
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return err
	}
	realFile, err := filepath.EvalSymlinks(filepath.Join(dir, loc))
	if err != nil {
		return err
	}
	rel, err := filepath.Rel(realDir, realFile)
	if err != nil || !filepath.IsLocal(rel) {
		return errOutside
	}
	return nil
}

// externalLocations returns the distinct external_data locations in the model file.
func externalLocations(modelPath string) ([]string, error) {
	f, err := os.Open(modelPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	s := scanner{r: f, seen: map[string]bool{}}
	if err := s.message(msgModel, 0, st.Size(), 0); err != nil {
		return nil, fmt.Errorf("not a valid ONNX model: %w", err)
	}
	return s.locs, nil
}

// msgKind names the ONNX protobuf messages the scanner descends into.
type msgKind int

const (
	msgOther msgKind = iota
	msgModel
	msgTraining
	msgGraph
	msgNode
	msgFunction
	msgAttribute
	msgSparse
	msgTensor
	msgEntry
)

// children maps (message, field number) to the submessage kind worth descending into.
var children = map[msgKind]map[uint64]msgKind{
	msgModel:     {7: msgGraph, 20: msgTraining, 25: msgFunction},
	msgTraining:  {1: msgGraph, 2: msgGraph},
	msgGraph:     {1: msgNode, 5: msgTensor, 15: msgSparse},
	msgNode:      {5: msgAttribute},
	msgFunction:  {7: msgNode, 11: msgAttribute},
	msgAttribute: {5: msgTensor, 6: msgGraph, 10: msgTensor, 11: msgGraph, 22: msgSparse, 23: msgSparse},
	msgSparse:    {1: msgTensor, 2: msgTensor},
	msgTensor:    {13: msgEntry},
}

const (
	maxDepth       = 64
	maxLocationLen = 4096
	windowSize     = 64 << 10
)

var errCorrupt = errors.New("corrupt protobuf")

// scanner walks protobuf messages in an io.ReaderAt through a read window.
type scanner struct {
	r      io.ReaderAt
	win    []byte
	winOff int64
	locs   []string
	seen   map[string]bool
}

// message walks the fields of a message of the given kind occupying [off, end).
func (s *scanner) message(kind msgKind, off, end int64, depth int) error {
	if depth > maxDepth {
		return errors.New("messages nested too deeply")
	}
	for off < end {
		tag, n, err := s.varint(off, end)
		if err != nil {
			return err
		}
		off += n
		field, wire := tag>>3, tag&7
		if field == 0 {
			return fmt.Errorf("%w: field number 0", errCorrupt)
		}
		var size int64
		switch wire {
		case 0:
			_, n, err = s.varint(off, end)
			size = n
		case 1:
			size = 8
		case 5:
			size = 4
		case 2:
			var l uint64
			l, n, err = s.varint(off, end)
			off += n
			if err == nil && l > uint64(end-off) {
				err = errCorrupt
			}
			size = int64(l)
		default:
			err = fmt.Errorf("%w: wire type %d", errCorrupt, wire)
		}
		if err != nil {
			return err
		}
		if off+size > end {
			return errCorrupt
		}
		if wire == 2 {
			if err := s.field(kind, field, off, off+size, depth); err != nil {
				return err
			}
		}
		off += size
	}
	return nil
}

// field handles one length-delimited field of a message of the given kind.
func (s *scanner) field(kind msgKind, field uint64, off, end int64, depth int) error {
	if kind == msgEntry {
		return nil // entries are read whole by entry
	}
	child, ok := children[kind][field]
	if !ok {
		return nil
	}
	if child == msgEntry {
		return s.entry(off, end)
	}
	return s.message(child, off, end, depth+1)
}

// entry reads a StringStringEntryProto and records the value of a "location" key.
func (s *scanner) entry(off, end int64) error {
	var key, value string
	for off < end {
		tag, n, err := s.varint(off, end)
		if err != nil {
			return err
		}
		off += n
		l, n, err := s.varint(off, end)
		if err != nil || tag&7 != 2 || l > uint64(end-off-n) || l > maxLocationLen {
			return fmt.Errorf("%w: external_data entry", errCorrupt)
		}
		off += n
		b, err := s.bytes(off, int(l))
		if err != nil {
			return err
		}
		switch tag >> 3 {
		case 1:
			key = string(b)
		case 2:
			value = string(b)
		}
		off += int64(l)
	}
	if key == "location" && !s.seen[value] {
		s.seen[value] = true
		s.locs = append(s.locs, value)
	}
	return nil
}

// varint decodes a base-128 varint at off (before end) and returns it and its length.
func (s *scanner) varint(off, end int64) (uint64, int64, error) {
	var buf [binary.MaxVarintLen64]byte
	n := min(int64(len(buf)), end-off)
	b, err := s.bytes(off, int(n))
	if err != nil {
		return 0, 0, err
	}
	copy(buf[:], b)
	v, k := binary.Uvarint(buf[:n])
	if k <= 0 {
		return 0, 0, fmt.Errorf("%w: bad varint", errCorrupt)
	}
	return v, int64(k), nil
}

// bytes returns n ≤ windowSize bytes at off; the slice is valid until the next call.
func (s *scanner) bytes(off int64, n int) ([]byte, error) {
	if off >= s.winOff && off+int64(n) <= s.winOff+int64(len(s.win)) {
		return s.win[off-s.winOff:][:n], nil
	}
	if cap(s.win) < windowSize {
		s.win = make([]byte, windowSize)
	}
	s.win = s.win[:windowSize]
	k, err := s.r.ReadAt(s.win, off)
	if k < n {
		if err == nil || errors.Is(err, io.EOF) {
			err = errCorrupt
		}
		return nil, err
	}
	s.win, s.winOff = s.win[:k], off
	return s.win[:n], nil
}

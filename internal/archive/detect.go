package archive

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
)

// Format is the kind of upload Extract handles.
type Format string

// Supported formats.
const (
	FormatZip   Format = "zip"
	FormatTar   Format = "tar"
	FormatTarGz Format = "tar.gz"
	FormatFile  Format = "file" // a single non-archive file such as model.onnx or train.py
)

const (
	tarMagicOffset = 257
	sniffLen       = 512
)

var (
	zipMagic      = []byte("PK\x03\x04")
	zipEmptyMagic = []byte("PK\x05\x06")
	gzipMagic     = []byte{0x1f, 0x8b}
	tarMagic      = []byte("ustar")
)

// Detect reports the format of the file at path from its magic bytes: zip
// (local file header or empty-archive record), tar ("ustar" at offset 257),
// gzip whose decompressed content is a tar. Anything else, including a gzip
// file that does not hold a tar, is FormatFile.
func Detect(path string) (Format, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("archive: detect: %w", err)
	}
	defer f.Close()
	head, err := readHead(f)
	if err != nil {
		return "", fmt.Errorf("archive: detect %s: %w", path, err)
	}
	switch {
	case bytes.HasPrefix(head, zipMagic), bytes.HasPrefix(head, zipEmptyMagic):
		return FormatZip, nil
	case isTar(head):
		return FormatTar, nil
	case bytes.HasPrefix(head, gzipMagic) && gzipHoldsTar(f):
		return FormatTarGz, nil
	}
	return FormatFile, nil
}

// readHead reads up to sniffLen bytes; a shorter file is not an error.
func readHead(r io.Reader) ([]byte, error) {
	head := make([]byte, sniffLen)
	n, err := io.ReadFull(r, head)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = nil
	}
	return head[:n], err
}

func isTar(head []byte) bool {
	end := tarMagicOffset + len(tarMagic)
	return len(head) >= end && bytes.Equal(head[tarMagicOffset:end], tarMagic)
}

// gzipHoldsTar reports whether the gzip stream in f starts with a tar header.
// Unreadable gzip data just means "not a tar.gz".
func gzipHoldsTar(f *os.File) bool {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return false
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		return false
	}
	defer zr.Close()
	head, err := readHead(zr)
	return err == nil && isTar(head)
}

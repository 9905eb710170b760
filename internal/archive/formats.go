package archive

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
)

const zipFlagEncrypted = 0x1

func (x *extractor) zip(f *os.File, size int64) error {
	zr, err := zip.NewReader(f, size)
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		return fmt.Errorf("%w: zip: %w", ErrInvalid, err)
	}
	if len(zr.File) > x.lim.MaxFiles {
		return tooLarge("MaxFiles", float64(x.lim.MaxFiles), "")
	}
	for _, zf := range zr.File {
		if err := x.zipEntry(zf); err != nil {
			return err
		}
	}
	return nil
}

func (x *extractor) zipEntry(zf *zip.File) error {
	if err := x.count(); err != nil {
		return err
	}
	if isMacOSXResource(zf.Name) {
		return nil // random access: the data is never read
	}
	name, err := cleanName(zf.Name)
	if err != nil {
		return err
	}
	mode := zf.Mode()
	if why := modeProblem(mode); why != "" {
		return unsafeEntry(name, why)
	}
	if mode.IsDir() {
		return x.dir(name)
	}
	if zf.Flags&zipFlagEncrypted != 0 {
		return fmt.Errorf("%w: entry %q: encrypted zip entries are not supported; upload an unencrypted archive", ErrInvalid, name)
	}
	rc, err := zf.Open()
	if err != nil {
		return fmt.Errorf("%w: entry %q: %w", ErrInvalid, name, err)
	}
	defer rc.Close()
	return x.regular(name, mode, declaredSize(zf.UncompressedSize64), rc)
}

func declaredSize(n uint64) int64 {
	if n > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(n)
}

// modeProblem explains why a zip entry's file type is refused, or "".
func modeProblem(m fs.FileMode) string {
	switch t := m.Type(); {
	case t&fs.ModeSymlink != 0:
		return "symbolic links are not allowed (all links are refused)"
	case t&(fs.ModeDevice|fs.ModeCharDevice) != 0:
		return "device files are not allowed"
	case t&fs.ModeNamedPipe != 0:
		return "named pipes (FIFOs) are not allowed"
	case t&fs.ModeSocket != 0:
		return "sockets are not allowed"
	case t&^fs.ModeDir != 0:
		return "unsupported file type " + t.String()
	}
	return ""
}

// regular writes a regular file entry.
func (x *extractor) regular(name string, mode fs.FileMode, declared int64, r io.Reader) error {
	if name == "." {
		return unsafeEntry(name, "a file cannot be the archive root")
	}
	return x.file(name, mode, declared, r)
}

func (x *extractor) tarGz(f *os.File) error {
	zr, err := gzip.NewReader(bufio.NewReader(f))
	if err != nil {
		return fmt.Errorf("%w: gzip: %w", ErrInvalid, err)
	}
	defer zr.Close()
	return x.tar(zr)
}

func (x *extractor) tar(r io.Reader) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) {
			return fmt.Errorf("%w: tar: %w", ErrInvalid, err)
		}
		if err := x.tarEntry(hdr, tr); err != nil {
			return err
		}
	}
}

func (x *extractor) tarEntry(hdr *tar.Header, r io.Reader) error {
	if err := x.count(); err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // archive-wide metadata, not a file
	}
	if isMacOSXResource(hdr.Name) {
		return x.skip(hdr.Name, hdr.Size, r)
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return x.dir(name)
	case tar.TypeReg, tar.TypeGNUSparse: // the reader turns TypeRegA into TypeReg
		return x.regular(name, fs.FileMode(hdr.Mode&0o777), hdr.Size, r)
	}
	return unsafeEntry(name, tarTypeProblem(hdr))
}

// tarTypeProblem explains why a tar entry type is refused.
func tarTypeProblem(hdr *tar.Header) string {
	switch hdr.Typeflag {
	case tar.TypeSymlink:
		return fmt.Sprintf("symbolic links are not allowed (all links are refused), target %q", hdr.Linkname)
	case tar.TypeLink:
		return fmt.Sprintf("hard links are not allowed (all links are refused), target %q", hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock:
		return "device files are not allowed"
	case tar.TypeFifo:
		return "named pipes (FIFOs) are not allowed"
	}
	return fmt.Sprintf("unsupported tar entry type %q", hdr.Typeflag)
}

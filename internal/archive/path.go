package archive

import (
	"path"
	"strings"
)

// cleanName validates an entry name from an archive and returns it in
// canonical form: relative, slash-separated, no trailing slash. A single
// leading "./" is stripped. The archive root ("./", ".") becomes ".".
// The error wraps ErrUnsafe and says why the name was refused.
func cleanName(raw string) (string, error) {
	if why := nameProblem(raw); why != "" {
		return "", unsafeEntry(raw, why)
	}
	name := strings.TrimPrefix(raw, "./")
	name = strings.TrimSuffix(name, "/")
	if name == "" || name == "." {
		return ".", nil
	}
	if why := componentProblem(name); why != "" {
		return "", unsafeEntry(raw, why)
	}
	return name, nil
}

// nameProblem checks the raw name as a whole.
func nameProblem(raw string) string {
	switch {
	case raw == "":
		return "empty name"
	case strings.ContainsRune(raw, 0):
		return "NUL byte in name"
	case strings.ContainsRune(raw, '\\'):
		return `backslash in name (Windows path separators are not allowed)`
	case strings.HasPrefix(raw, "/"):
		return "absolute path"
	case hasDriveLetter(raw):
		return "Windows drive letter in name"
	}
	return ""
}

// Name length limits of common Linux filesystems, checked here so that an
// over-long name is reported as bad content rather than as a disk error.
const (
	maxComponentLen = 255
	maxPathLen      = 4096
)

// componentProblem checks name (without leading "./" and trailing "/").
func componentProblem(name string) string {
	if len(name) > maxPathLen {
		return "path longer than 4096 bytes"
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return `path contains a ".." component (would escape the destination)`
		}
		if len(c) > maxComponentLen {
			return "path component longer than 255 bytes"
		}
	}
	if path.Clean(name) != name {
		return `path is not in canonical form (empty or "." components)`
	}
	return ""
}

func hasDriveLetter(s string) bool {
	if len(s) < 2 || s[1] != ':' {
		return false
	}
	c := s[0] | 0x20 // lower case
	return c >= 'a' && c <= 'z'
}

// validBaseName checks the upload name used for a single-file upload.
func validBaseName(name string) string {
	if why := nameProblem(name); why != "" {
		return why
	}
	switch {
	case name == "." || name == "..":
		return `"." and ".." are not file names`
	case strings.Contains(name, "/"):
		return "file name must not contain path separators"
	case len(name) > maxComponentLen:
		return "file name longer than 255 bytes"
	}
	return ""
}

// isMacOSXResource reports whether name is macOS resource-fork metadata
// ("__MACOSX/..."), which Extract skips.
func isMacOSXResource(raw string) bool {
	name := strings.TrimPrefix(raw, "./")
	return name == "__MACOSX" || strings.HasPrefix(name, "__MACOSX/")
}

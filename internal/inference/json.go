package inference

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// This file holds a small validating JSON scanner. The decoders walk request bodies with it directly,
// keeping tokens as offsets into the body instead of building interface{} trees: a 100-row dataframe
// is a few thousand 12-byte tokens, not a few thousand boxed values.

// kind is the kind of a JSON value.
type kind uint8

const (
	kInvalid kind = iota
	kNull
	kFalse
	kTrue
	kInt   // a number without fraction or exponent
	kFloat // a number with a fraction or exponent
	kString
	kArray
	kObject
)

// tok is one JSON value of the body: its bytes are src[start:end] (strings with their quotes).
type tok struct {
	start, end uint32
	k          kind
	esc        bool // a string with backslash escapes
}

func (t tok) raw(src []byte) []byte { return src[t.start:t.end] }

// maxBody is the largest body the scanner accepts (offsets are uint32).
const maxBody = math.MaxUint32

// maxNesting bounds how deeply nested JSON may be (encoding/json's limit).
const maxNesting = 10000

// scanner reads JSON values from b. After the first syntax error every method does nothing and err
// holds that error.
type scanner struct {
	b     []byte
	i     int
	depth int
	err   error
}

func newScanner(b []byte) (*scanner, error) {
	if err := checkBodySize(b); err != nil {
		return nil, err
	}
	return &scanner{b: b}, nil
}

func checkBodySize(b []byte) error {
	if len(b) > maxBody {
		return invalid("", "request body of %d bytes is too large", len(b))
	}
	return nil
}

func (s *scanner) syntax(format string, args ...any) {
	if s.err == nil {
		s.err = invalidJSON(s.b, s.i, fmt.Sprintf(format, args...))
	}
}

// invalidJSON is the client's error for a body that stops being JSON at byte i: where (byte, line) and why.
func invalidJSON(b []byte, i int, why string) error {
	line := 1
	for _, c := range b[:min(i, len(b))] {
		if c == '\n' {
			line++
		}
	}
	return invalid("", "invalid JSON at byte %d (line %d): %s", i, line, why)
}

// ValidJSON checks that body is one JSON value, with an error a person can act on when it is not (400: where
// it broke, why, and the text up to there). A valid body costs one pass and no allocation (json.Valid pools
// its scanner); only a failure parses again, for the position.
func ValidJSON(body []byte) error {
	if json.Valid(body) {
		return nil
	}
	var se *json.SyntaxError
	if err := json.Unmarshal(body, new(json.RawMessage)); !errors.As(err, &se) {
		return invalid("", "the body is not valid JSON") // json.Valid and Unmarshal disagree: not expected
	}
	end := min(int(se.Offset), len(body)) // the bytes read, the offending one included
	at := end
	if strings.HasPrefix(se.Error(), "invalid character") {
		at-- // the offending byte's own offset, as the scanner's errors count
	}
	return invalidJSON(body, at, fmt.Sprintf("%s, in %q", se.Error(), body[max(0, end-40):end]))
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the kind of the next value without consuming it (kInvalid at the end or on a stray byte).
func (s *scanner) peek() kind {
	s.ws()
	if s.err != nil || s.i >= len(s.b) {
		return kInvalid
	}
	switch c := s.b[s.i]; {
	case c == '{':
		return kObject
	case c == '[':
		return kArray
	case c == '"':
		return kString
	case c == 't':
		return kTrue
	case c == 'f':
		return kFalse
	case c == 'n':
		return kNull
	case c == '-' || c >= '0' && c <= '9':
		return kInt
	}
	return kInvalid
}

// value consumes and validates one value and returns its token (kInvalid after a syntax error).
func (s *scanner) value() tok {
	s.ws()
	if s.err != nil {
		return tok{}
	}
	if s.i >= len(s.b) {
		s.syntax("unexpected end of input")
		return tok{}
	}
	start := s.i
	var k kind
	esc := false
	switch c := s.b[s.i]; {
	case c == '"':
		k = kString
		esc = s.str()
	case c == '-' || c >= '0' && c <= '9':
		k = s.num()
	case c == '[':
		k = kArray
		s.composite()
	case c == '{':
		k = kObject
		s.composite()
	case c == 't':
		k = kTrue
		s.lit("true")
	case c == 'f':
		k = kFalse
		s.lit("false")
	case c == 'n':
		k = kNull
		s.lit("null")
	default:
		s.syntax("unexpected character %q", c)
	}
	if s.err != nil {
		return tok{}
	}
	return tok{start: uint32(start), end: uint32(s.i), k: k, esc: esc}
}

func (s *scanner) lit(word string) {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		s.syntax("invalid literal (expected %s)", word)
		return
	}
	s.i += len(word)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// num consumes a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) num() kind {
	b, i := s.b, s.i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && isDigit(b[i]):
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		s.i = i
		s.syntax("invalid number")
		return kInvalid
	}
	k := kInt
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || !isDigit(b[i]) {
			s.i = i
			s.syntax("invalid number: digits must follow the decimal point")
			return kInvalid
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
		k = kFloat
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			s.i = i
			s.syntax("invalid number: digits must follow the exponent")
			return kInvalid
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
		k = kFloat
	}
	s.i = i
	return k
}

func isHex(c byte) bool { return isDigit(c) || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

// str consumes a string and reports whether it has escapes. Bytes ≥ 0x80 are not checked for UTF-8
// validity (like encoding/json): BYTES tensors keep them as sent.
func (s *scanner) str() (esc bool) {
	b, i := s.b, s.i+1
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			s.i = i + 1
			return esc
		case c == '\\':
			esc = true
			if i+1 >= len(b) {
				s.i = i
				s.syntax("unterminated string")
				return
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					s.i = i
					s.syntax(`invalid \u escape in string`)
					return
				}
				i += 6
			default:
				s.i = i
				s.syntax("invalid escape %q in string", b[i:i+2])
				return
			}
		case c < 0x20:
			s.i = i
			s.syntax("control character %q in string", c)
			return
		default:
			i++
		}
	}
	s.i = i
	s.syntax("unterminated string")
	return
}

// composite consumes an array or object.
func (s *scanner) composite() {
	s.depth++
	if s.depth > maxNesting {
		s.syntax("nested more than %d levels deep", maxNesting)
		return
	}
	if s.b[s.i] == '[' {
		s.i++
		for n := 0; s.next(']', n); n++ {
			s.value()
		}
	} else {
		s.i++
		for n := 0; s.next('}', n); n++ {
			s.key()
			s.value()
		}
	}
	s.depth--
}

// enter consumes the '[' or '{' of the value that peek reported.
func (s *scanner) enter() { s.i++ }

// firstElem returns the kind of the first element of the list that peek reported, consuming nothing
// (kInvalid for an empty list).
func (s *scanner) firstElem() kind {
	j := s.i
	s.enter()
	first := s.peek()
	s.i = j
	return first
}

// next reports whether the array or object being read (closed by close) has an element after the n
// already read, consuming the comma before it; at the end it consumes close and returns false.
func (s *scanner) next(close byte, n int) bool {
	s.ws()
	if s.err != nil {
		return false
	}
	if s.i >= len(s.b) {
		s.syntax("unexpected end of input")
		return false
	}
	c := s.b[s.i]
	if c == close {
		s.i++
		return false
	}
	if n > 0 {
		if c != ',' {
			s.syntax("expected ',' or '%c', found %q", close, c)
			return false
		}
		s.i++
	}
	return true
}

// key consumes an object key and its colon.
func (s *scanner) key() tok {
	s.ws()
	if s.err != nil {
		return tok{}
	}
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		s.syntax("expected a string key")
		return tok{}
	}
	t := s.value()
	s.ws()
	if s.err != nil {
		return tok{}
	}
	if s.i >= len(s.b) || s.b[s.i] != ':' {
		s.syntax("expected ':' after object key")
		return tok{}
	}
	s.i++
	return t
}

// end checks that only whitespace follows the top-level value.
func (s *scanner) end() {
	s.ws()
	if s.err == nil && s.i != len(s.b) {
		s.syntax("unexpected data after the top-level value")
	}
}

// fields reads the object that peek reported, calling field with each key and the scanner at its value,
// which field must consume. It stops at the first error, field's or the scanner's.
func (s *scanner) fields(field func(k tok) error) error {
	s.enter()
	for n := 0; s.next('}', n); n++ {
		k := s.key()
		if s.err != nil {
			break
		}
		if err := field(k); err != nil {
			return err
		}
	}
	return s.err
}

// bodyFields is fields for the top-level object of a request body, which only whitespace may follow.
func (s *scanner) bodyFields(field func(k tok) error) error {
	if err := s.fields(field); err != nil {
		return err
	}
	s.end()
	return s.err
}

// keyOnce marks the known key j of an object (at where; nil for the request body) as seen, failing on its
// second occurrence: which of the two values counts would be a guess.
func keyOnce(seen []bool, j int, key string, where func() string) error {
	switch {
	case !seen[j]:
		seen[j] = true
		return nil
	case where == nil:
		return invalid("", "duplicate key %q in the request body", key)
	}
	return invalid(where(), "duplicate key %q", key)
}

// keyIs reports whether the key token k is name (escaped keys are unescaped to compare).
func keyIs(src []byte, k tok, name string) bool {
	if !k.esc {
		return string(src[k.start+1:k.end-1]) == name
	}
	return string(unquote(src, k)) == name
}

// unquote returns the decoded bytes of a string token, in a new slice when the string has escapes and
// aliasing src otherwise.
func unquote(src []byte, t tok) []byte {
	inner := src[t.start+1 : t.end-1]
	if !t.esc {
		return inner
	}
	return appendUnescaped(make([]byte, 0, len(inner)), inner)
}

// tokString returns a string token as a Go string.
func tokString(src []byte, t tok) string {
	if !t.esc {
		return string(src[t.start+1 : t.end-1])
	}
	return string(unquote(src, t))
}

// appendUnescaped appends the decoded contents of a scanned (so well-formed) JSON string body.
// Lone surrogates become U+FFFD, as in encoding/json.
func appendUnescaped(dst, s []byte) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		e := s[i+1]
		i += 2
		switch e {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := rune(hex4(s[i:]))
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := utf8.RuneError
				if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					r2 = rune(hex4(s[i+2:]))
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\', '/'
			dst = append(dst, e)
		}
	}
	return dst
}

func hex4(b []byte) uint16 {
	var v uint16
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		v = v<<4 | uint16(c)
	}
	return v
}

// describe says what a token is, for "got ..." in error messages.
func describe(src []byte, t tok) string {
	switch t.k {
	case kNull:
		return "null"
	case kTrue:
		return "true"
	case kFalse:
		return "false"
	case kInt, kFloat:
		return "number " + clip(t.raw(src))
	case kString:
		return "string " + clip(t.raw(src))
	case kArray:
		return "a list"
	case kObject:
		return "an object"
	}
	return "nothing"
}

// clip shortens raw JSON text for an error message.
func clip(b []byte) string {
	const n = 40
	if len(b) <= n {
		return string(b)
	}
	i := n
	for i > 0 && !utf8.RuneStart(b[i]) {
		i--
	}
	s := string(b[:i]) + "…"
	if b[0] == '"' {
		s += `"`
	}
	return s
}

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD.
func appendString[T string | []byte](b []byte, s T) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		var buf [utf8.UTFMax]byte
		r, size := utf8.DecodeRune(buf[:copy(buf[:], s[i:])])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendFloat appends f as a JSON number the way encoding/json does (shortest representation, exponent
// outside [1e-6, 1e21)), or null for NaN and ±Inf.
func appendFloat(b []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(b, "null"...)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		// clean up e-09 to e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

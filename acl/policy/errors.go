package policy

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"unicode/utf8"
)

// ErrNotAllowed is wrapped by AccessRuleFor's errors when the policy does
// not let the source request what it asked for (as opposed to a request
// that names an unknown service or port), so callers can answer 403.
var ErrNotAllowed = errors.New("not allowed by the policy")

// Error returns "line 12, column 5: msg", or just msg when the error is not
// tied to a place (Line 0).
func (e *Error) Error() string {
	if e.Line <= 0 {
		return e.Msg
	}
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Col, e.Msg)
}

// Format renders err for a terminal in the "FILE:LINE:COL: msg" form that
// editors jump to, e.g. "policy.hujson:12:5: unknown tag \"tag:wbe\"".
// Errors without a place read "FILE: msg".
func Format(name string, err error) string {
	var pe *Error
	if errors.As(err, &pe) && pe.Line > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", name, pe.Line, pe.Col, pe.Msg)
	}
	return name + ": " + err.Error()
}

// text maps byte offsets of a policy to 1-based lines and columns.
// Columns count runes (a tab and a multi-byte character are one column
// each), which is what most editors show.
type text struct {
	src   []byte
	lines []int // byte offset of the start of each line
	// last is the most recent answer of pos; the parser asks in mostly
	// increasing order, so counting on from it keeps a long line linear.
	lastOff int
	last    Pos
}

func newText(src []byte) *text {
	lines := []int{0}
	for i, b := range src {
		if b == '\n' {
			lines = append(lines, i+1)
		}
	}
	return &text{src: src, lines: lines}
}

// pos returns the place of byte offset off, clamped to the text.
func (t *text) pos(off int) Pos {
	off = max(0, min(off, len(t.src)))
	l := sort.Search(len(t.lines), func(i int) bool { return t.lines[i] > off }) - 1
	if t.last.Line == l+1 && t.lastOff <= off {
		t.last.Col += utf8.RuneCount(t.src[t.lastOff:off])
	} else {
		t.last = Pos{Line: l + 1, Col: utf8.RuneCount(t.src[t.lines[l]:off]) + 1}
	}
	t.lastOff = off
	return t.last
}

// offset returns the byte offset of a 1-based line and byte column,
// clamped to the text.
func (t *text) offset(line, byteCol int) int {
	if line < 1 {
		return 0
	}
	if line > len(t.lines) {
		return len(t.src)
	}
	return max(0, min(t.lines[line-1]+byteCol-1, len(t.src)))
}

func (t *text) errAt(off int, format string, args ...any) error {
	return &Error{Pos: t.pos(off), Msg: fmt.Sprintf(format, args...)}
}

// partErr is a syntax error at byte index i of a string being parsed; the
// parser turns it into an *Error at the matching place in the text.
type partErr struct {
	i   int
	msg string
}

func perr(i int, format string, args ...any) *partErr {
	return &partErr{i: i, msg: fmt.Sprintf(format, args...)}
}

// q quotes user text for a one-line message, shortening long text.
func q(s string) string {
	const max = 64
	if utf8.RuneCountInString(s) > max {
		r := []rune(s)
		return strconv.Quote(string(r[:max])) + "..."
	}
	return strconv.Quote(s)
}

package filter

import (
	"fmt"
	"strings"
)

// Error is a bad filter: what is wrong and where. Its message shows the
// line of the expression with a caret under the error:
//
//	bad filter: unknown name "sidd" (known: mid, sid, router, inner, packets, bytes)
//	  mid == 1 and sidd > 3
//	               ^
type Error struct {
	Expr string // the filter as given
	// Pos is the offset of the error in Expr, in characters (runes) from 0;
	// len(Expr) is just past its end; -1 is nowhere in particular.
	Pos int
	Msg string
}

// LineColumn is where the error is, both from 1, in characters; 0, 0 when
// it is nowhere in particular.
func (e *Error) LineColumn() (line, col int) {
	if e.Pos < 0 {
		return 0, 0
	}
	line, col = 1, 1
	for i, r := range []rune(e.Expr) {
		if i == e.Pos {
			break
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
	}
	return line, col
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("bad filter: ")
	line, col := e.LineColumn()
	lines := strings.Split(e.Expr, "\n")
	if line > 1 || len(lines) > 1 && line > 0 {
		fmt.Fprintf(&b, "line %d: ", line)
	}
	b.WriteString(e.Msg)
	if line == 0 {
		return b.String()
	}
	// Tabs would move the text but not the caret: show them as spaces.
	text := strings.ReplaceAll(lines[line-1], "\t", " ")
	fmt.Fprintf(&b, "\n  %s\n  %s^", text, strings.Repeat(" ", col-1))
	return b.String()
}

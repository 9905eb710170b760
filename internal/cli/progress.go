package cli

import (
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// termBar is a progress bar (or, of an unknown total, a spinner) on stderr. The zero termBar, for a stderr
// that is not a terminal, does nothing. Its methods drop the bar's write errors: a failed redraw of the
// terminal has no one to tell, and the command's own outcome does not depend on it.
type termBar struct{ pb *progressbar.ProgressBar }

// newBar returns a bar of total units (-1 when unknown) that clears its line when it finishes, or the zero
// bar when stderr is not a terminal.
func (a *app) newBar(total int64, opts ...progressbar.Option) termBar {
	f, ok := a.stderrTerminal()
	if !ok {
		return termBar{}
	}
	opts = append([]progressbar.Option{progressbar.OptionSetWriter(f), progressbar.OptionClearOnFinish()}, opts...)
	return termBar{progressbar.NewOptions64(total, opts...)}
}

// stderrTerminal returns stderr when it is a terminal (where progress and hints for a person go).
func (a *app) stderrTerminal() (*os.File, bool) {
	f, ok := a.stderr.(*os.File)
	return f, ok && term.IsTerminal(int(f.Fd()))
}

func (b termBar) describe(s string) {
	if b.pb != nil {
		b.pb.Describe(s)
	}
}

// set moves the bar to n units; total is there for the progress callbacks of package client, which pass it.
func (b termBar) set(n, total int64) {
	if b.pb != nil {
		_ = b.pb.Set64(n)
	}
}

func (b termBar) changeMax(total int64) {
	if b.pb != nil {
		b.pb.ChangeMax64(total)
	}
}

func (b termBar) finish() {
	if b.pb != nil {
		_ = b.pb.Finish()
	}
}

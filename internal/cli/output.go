package cli

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-ml/slipway/client"
)

// newTable returns a tab-separated table writer on w; call Flush when done.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// row writes one tab-separated row.
func row(w io.Writer, cells ...any) {
	var b strings.Builder
	for i, c := range cells {
		if i > 0 {
			b.WriteByte('\t')
		}
		s := fmt.Sprint(c)
		if s == "" {
			s = "-"
		}
		b.WriteString(strings.ReplaceAll(s, "\t", " "))
	}
	b.WriteByte('\n')
	_, _ = io.WriteString(w, b.String()) // into a table: its Flush reports a failed write
}

// requireFlags marks the command's own flags as required: an error (no such flag) is a bug.
func requireFlags(cmd *cobra.Command, names ...string) {
	for _, name := range names {
		if err := cmd.MarkFlagRequired(name); err != nil {
			panic(err)
		}
	}
}

// removeLeftover removes a temporary file or folder on the way out. Once it has been renamed into place there
// is nothing left to remove, and one that cannot be removed is only a stray temporary file: neither changes
// the command's outcome.
func removeLeftover(path string) { _ = os.RemoveAll(path) }

// formatTime shows a time in the local zone, to the minute.
func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04")
}

// formatMap shows a map as k=v pairs sorted by key.
func formatMap[V any](m map[string]V) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%v", k, m[k]))
	}
	return strings.Join(parts, ",")
}

// formatBytes shows a size in SI units (kB, MB, GB).
func formatBytes(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, unit := range []string{"kB", "MB", "GB", "TB"} {
		f /= 1000
		if f < 1000 {
			return fmt.Sprintf("%.1f %s", f, unit)
		}
	}
	return fmt.Sprintf("%.1f PB", f/1000)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// show prints v as JSON with -o json, else with text; a non-nil err (from fetching v) is returned as is.
func show[T any](a *app, v T, err error, text func(T)) error {
	if err != nil {
		return err
	}
	if a.jsonOutput() {
		return a.printJSON(v)
	}
	text(v)
	return nil
}

// showTable prints items as JSON with -o json, else as a table: the header, then the cells of each item. A
// non-nil err (from fetching items) is returned as is.
func showTable[T any](a *app, items []T, err error, header []any, cells func(T) []any) error {
	if err != nil {
		return err
	}
	if a.jsonOutput() {
		return a.printJSON(items)
	}
	return printTable(a, items, header, cells)
}

// showAll is showTable for a list the server answers whole (deployments, tokens): with -o json it prints the
// page envelope of all the items, as the API answers it.
func showAll[T any](a *app, items []T, err error, header []any, cells func(T) []any) error {
	if err != nil {
		return err
	}
	if a.jsonOutput() {
		return a.printJSON(listJSON(items, len(items), 0, len(items)))
	}
	return printTable(a, items, header, cells)
}

// printTable prints the header, then the cells of each item.
func printTable[T any](a *app, items []T, header []any, cells func(T) []any) error {
	tw := newTable(a.stdout)
	row(tw, header...)
	for _, it := range items {
		row(tw, cells(it)...)
	}
	return tw.Flush()
}

// saveDownload saves what fetch streams into file through a temporary file next to it, with a progress bar:
// file takes its name only once the download is whole and check (if any) accepts the temporary file. what
// names the download in errors ("backup", "export").
func (a *app) saveDownload(file, what string, fetch func(w io.Writer, progress func(received, total int64)) (int64, error), check func(tmp string) error) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(file), ".slipway-download-*")
	if err != nil {
		return 0, err
	}
	defer removeLeftover(tmp.Name())
	bar := a.newProgress(-1)
	bar.describe("downloading")
	n, err := fetch(tmp, bar.set)
	bar.finish()
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	var refused *client.Error
	if errors.As(err, &refused) {
		return n, err // refused before the first byte: the problem says why
	}
	if err != nil {
		return n, fmt.Errorf("the %s is incomplete, nothing saved (the server log says why it stopped): %w", what, err)
	}
	if check != nil {
		if err := check(tmp.Name()); err != nil {
			return n, fmt.Errorf("the %s is incomplete, nothing saved: %w", what, err)
		}
	}
	return n, os.Rename(tmp.Name(), file)
}

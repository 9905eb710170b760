//go:build cgo

package onnx

/*
#include <malloc.h>

// slipway_heap_in_use is what the C allocator has handed out and not taken back: the chunks in use in every
// arena plus the blocks it mmapped for large allocations (glibc's mallinfo2, which sums over all arenas).
static size_t slipway_heap_in_use(void) {
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

static void slipway_heap_trim(void) { malloc_trim(0); }
*/
import "C"

// HeapInUse is the number of bytes the process's C allocator has handed out and not taken back, which is where
// ONNX Runtime keeps a session: its graph, initializers, kernels and arena. Go's own heap is not in it. The
// difference across a Load, with no other load under way, is what the loaded session holds. Unlike the
// growth of the resident set, it also counts memory that a session reuses after another one was freed (glibc
// keeps freed pages and hands them out again without the RSS moving).
func HeapInUse() (int64, bool) { return int64(C.slipway_heap_in_use()), true }

// ReleaseFreeMemory gives the pages the C allocator holds free back to the system (glibc's malloc_trim, which
// also releases free pages inside its arenas). A session freed by Close leaves its pages free but resident: the
// server's resident set would keep the high-water mark of every model it ever loaded, spread over the
// allocator's per-thread arenas, instead of what is loaded now.
func ReleaseFreeMemory() { C.slipway_heap_trim() }

package main

import (
	"math"
	"math/bits"
	"time"
)

// Histogram records latencies in log-linear buckets, the HDR histogram layout: values below 2^subBits
// nanoseconds get one bucket each, and every power of two above is split into 2^subBits equal buckets. A
// recorded value is therefore known to within 1/2^subBits of itself (under 0.8% with subBits = 7), the memory
// is fixed (a few tens of KB whatever the run length) and histograms of several goroutines merge by adding
// their counts. Count, min, max and sum are exact.
type Histogram struct {
	counts [numBuckets]uint64
	total  uint64
	min    int64
	max    int64
	sum    float64 // nanoseconds, for the mean
}

const (
	subBits    = 7
	subCount   = 1 << subBits
	numBuckets = (64 - subBits) * subCount // highest bucket index for 2^63-1 is (63-subBits+1)*subCount-1
)

// bucketOf returns the bucket index of v (nanoseconds, v >= 0).
func bucketOf(v int64) int {
	if v < subCount {
		return int(v)
	}
	msb := bits.Len64(uint64(v)) - 1 // >= subBits
	shift := msb - subBits
	sub := int(v >> shift) // in [subCount, 2*subCount)
	return (shift+1)*subCount + sub - subCount
}

// bucketRange returns the lowest and highest value that fall in bucket i.
func bucketRange(i int) (lo, hi int64) {
	if i < subCount {
		return int64(i), int64(i)
	}
	shift := i/subCount - 1
	sub := int64(i%subCount + subCount)
	lo = sub << shift
	return lo, lo + (int64(1) << shift) - 1
}

// Record adds one latency.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)]++
	if h.total == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.total++
	h.sum += float64(v)
}

// Merge adds every value of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.total += o.total
	h.sum += o.sum
}

// Count is the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total }

// Max is the largest recorded value (exact).
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Min is the smallest recorded value (exact).
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Mean is the average of the recorded values (exact up to float rounding).
func (h *Histogram) Mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.total))
}

// Percentile returns the value at percentile p (0..100) by the nearest-rank definition: the smallest recorded
// value such that at least p% of the values are <= it. The value reported for a bucket is its midpoint, clamped
// to the exact min and max, so p=0 is the minimum and p=100 the maximum. An empty histogram gives 0.
func (h *Histogram) Percentile(p float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	if p <= 0 {
		return time.Duration(h.min)
	}
	if p >= 100 {
		return time.Duration(h.max)
	}
	rank := uint64(math.Ceil(p / 100 * float64(h.total)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := lo + (hi-lo)/2
			v = max(v, h.min)
			v = min(v, h.max)
			return time.Duration(v)
		}
	}
	return time.Duration(h.max) // unreachable: the counts add up to total
}

// Package stats is the pure math of monitoring: two-sample drift tests that agree with SciPy (Kolmogorov–Smirnov
// with SciPy's exact and kstwo p-values, Wasserstein-1, chi-square on the contingency table with Yates'
// correction, Jensen–Shannon distance), the population stability index with Evidently's zero handling, a
// weighted-point distribution summary (exact while small, compressed beyond), streaming accumulators that compute
// the same statistics against a reference in one pass with bounded memory, profiles of a data sample, and
// classification/regression metrics that agree with scikit-learn.
//
// The profile, distribution summary and metric types it fills are root wire types (slipway.DataProfile,
// slipway.Distribution, slipway.ClassificationMetrics...), aliased or converted here: stats imports only
// the standard library and the root package.
//
// Nothing here does I/O; every function is deterministic. Each test file says which SciPy or scikit-learn function
// a result is compared with (stats_scipy_test.go runs /usr/bin/python3 on the same samples).
package stats

package stats

import "math"

// The distribution of the one-sample two-sided Kolmogorov–Smirnov statistic D_n for finite n: SciPy's kstwo,
// ported from scipy/stats/_ksstats.py (Simard & L'Ecuyer's choice of algorithm by n and n*x^2: Ruben–Gambino at
// the extremes, the Durbin matrix (Marsaglia–Tsang–Wang), Pomeranz's recursion, the Pelz–Good expansion, and
// 2 * Smirnov's one-sided tail where it is exact or sufficient).

const (
	e128    = 128
	ep128   = 3.402823669209385e+38 // 2^128
	em128   = 2.938735877055719e-39 // 2^-128
	sqrt2Pi = 2.5066282746310002    // sqrt(2*pi)
	log2Pi  = 1.8378770664093453    // log(2*pi)
	minLog  = -708
	sqrt3   = 1.7320508075688772
)

var stirlingCoeffs = []float64{-2.955065359477124183e-2, 6.4102564102564102564e-3,
	-1.9175269175269175269e-3, 8.4175084175084175084e-4,
	-5.952380952380952381e-4, 7.9365079365079365079e-4,
	-2.7777777777777777778e-3, 8.3333333333333333333e-2}

func polyval(p []float64, x float64) float64 {
	var y float64
	for _, c := range p {
		y = y*x + c
	}
	return y
}

func logNFactorialDivNPowN(n float64) float64 {
	rn := 1 / n
	return math.Log(n)/2 - n + log2Pi/2 + rn*polyval(stirlingCoeffs, rn/n)
}

// KolmogorovSF is scipy.stats.kstwo.sf(x, n) = Pr(D_n > x).
func KolmogorovSF(n int, x float64) float64 {
	if n <= 0 || math.IsNaN(x) {
		return math.NaN()
	}
	if x >= 1 {
		return 0
	}
	if x <= 0 {
		return 1
	}
	fn := float64(n)
	t := fn * x
	if t <= 1 { // Ruben–Gambino: 1/2n <= x <= 1/n
		if t <= 0.5 {
			return 1
		}
		var prob float64
		if n <= 140 {
			prob = 1
			for i := 1; i <= n; i++ {
				prob *= float64(i) * (1 / fn) * (2*t - 1)
			}
		} else {
			prob = math.Exp(logNFactorialDivNPowN(fn) + fn*math.Log(2*t-1))
		}
		return clip01(1 - prob)
	}
	if t >= fn-1 { // Ruben–Gambino
		return clip01(2 * math.Pow(1-x, fn))
	}
	if x >= 0.5 { // exact: 2 * smirnov
		return clip01(2 * smirnovSF(n, x))
	}
	nxsquared := t * x
	if n <= 140 {
		if nxsquared <= 0.754693 {
			return clip01(1 - kolmognDMTW(n, x))
		}
		if nxsquared <= 4 {
			return clip01(1 - kolmognPomeranz(n, x))
		}
		return clip01(2 * smirnovSF(n, x))
	}
	if nxsquared >= 370 {
		return 0
	}
	if nxsquared >= 2.2 {
		return clip01(2 * smirnovSF(n, x))
	}
	var cdf float64
	if n <= 100000 && fn*math.Pow(x, 1.5) <= 1.4 {
		cdf = kolmognDMTW(n, x)
	} else {
		cdf = kolmognPelzGood(n, x)
	}
	return clip01(1 - cdf)
}

// smirnovSF is scipy.special.smirnov(n, x) = Pr(D_n^+ >= x), by the Birnbaum–Tingey sum (all terms positive, so no
// cancellation), each term in log space:
//
//	x * sum_{j=0}^{floor(n(1-x))} binom(n, j) (x + j/n)^(j-1) (1 - x - j/n)^(n-j)
func smirnovSF(n int, x float64) float64 {
	if x <= 0 {
		return 1
	}
	if x >= 1 {
		return 0
	}
	fn := float64(n)
	lgn1, _ := math.Lgamma(fn + 1)
	maxj := int(math.Floor(fn * (1 - x)))
	var sum float64
	for j := 0; j <= maxj && j <= n; j++ {
		fj := float64(j)
		a := x + fj/fn
		b := 1 - x - fj/fn
		if b <= 0 {
			if n-j != 0 {
				continue
			}
			b = 1 // 0^0
		}
		lj, _ := math.Lgamma(fj + 1)
		lnj, _ := math.Lgamma(fn - fj + 1)
		logTerm := lgn1 - lj - lnj + (fj-1)*math.Log(a) + (fn-fj)*math.Log(b)
		sum += math.Exp(logTerm)
	}
	return clip01(x * sum)
}

// kolmognDMTW is Pr(D_n <= d) by the Durbin matrix algorithm as Marsaglia, Tsang and Wang (2003) compute it.
func kolmognDMTW(n int, d float64) float64 {
	if d >= 1 {
		return 1
	}
	fn := float64(n)
	nd := fn * d
	if nd <= 0.5 {
		return 0
	}
	k := int(math.Ceil(nd))
	h := float64(k) - nd
	m := 2*k - 1
	H := newMat(m)
	v := make([]float64, m)
	w := make([]float64, m)
	fac := 1.0
	for j := 1; j <= m; j++ {
		v[j-1] = 1 - math.Pow(h, float64(j))
		w[j-1] = fac
		fac /= float64(j)
		v[j-1] *= fac
	}
	tt := math.Pow(math.Max(2*h-1, 0), float64(m)) - 2*math.Pow(h, float64(m))
	v[m-1] = (1 + tt) * fac
	for i := 1; i < m; i++ {
		for r := i - 1; r < m; r++ {
			H.set(r, i, w[r-(i-1)])
		}
	}
	for r := range m {
		H.set(r, 0, v[r])
	}
	for c := range m {
		H.set(m-1, c, v[m-1-c])
	}
	Hpwr := identity(m)
	nn := n
	expnt, Hexpnt := 0, 0
	for nn > 0 {
		if nn%2 == 1 {
			Hpwr = Hpwr.mul(H)
			expnt += Hexpnt
		}
		H = H.mul(H)
		Hexpnt *= 2
		if math.Abs(H.at(k-1, k-1)) > ep128 {
			H.scale(1 / ep128)
			Hexpnt += e128
		}
		nn /= 2
	}
	p := Hpwr.at(k-1, k-1)
	for i := 1; i <= n; i++ {
		p = float64(i) * p / fn
		if math.Abs(p) < em128 {
			p *= ep128
			expnt -= e128
		}
	}
	if expnt != 0 {
		p = math.Ldexp(p, expnt)
	}
	return clip01(p)
}

type mat struct {
	n int
	a []float64
}

func newMat(n int) mat                { return mat{n: n, a: make([]float64, n*n)} }
func (m mat) at(r, c int) float64     { return m.a[r*m.n+c] }
func (m mat) set(r, c int, v float64) { m.a[r*m.n+c] = v }
func (m mat) scale(f float64) {
	for i := range m.a {
		m.a[i] *= f
	}
}

func identity(n int) mat {
	m := newMat(n)
	for i := range n {
		m.set(i, i, 1)
	}
	return m
}

func (m mat) mul(o mat) mat {
	out := newMat(m.n)
	n := m.n
	for i := range n {
		row := out.a[i*n : (i+1)*n]
		for k := range n {
			a := m.a[i*n+k]
			if a == 0 {
				continue
			}
			orow := o.a[k*n : (k+1)*n]
			for j := range n {
				row[j] += a * orow[j]
			}
		}
	}
	return out
}

func pomeranzJ1J2(i, n, ll, ceilf, roundf int) (int, int) {
	var j1, j2 int
	if i == 0 {
		j1, j2 = -ll-ceilf-1, ll+ceilf-1
	} else {
		ip1div2, ip1mod2 := (i+1)/2, (i+1)%2
		if ip1mod2 == 0 { // i is odd
			if ip1div2 == n+1 {
				j1, j2 = n-ll-ceilf-1, n+ll+ceilf-1
			} else {
				j1, j2 = ip1div2-1-ll-roundf-1, ip1div2+ll-1+ceilf-1
			}
		} else {
			j1, j2 = ip1div2-1-ll-1, ip1div2+ll+roundf-1
		}
	}
	return max(j1+2, 0), min(j2, n)
}

// kolmognPomeranz is Pr(D_n <= x) by Pomeranz's recursion (1974).
func kolmognPomeranz(n int, x float64) float64 {
	fn := float64(n)
	t := fn * x
	ll := int(math.Floor(t))
	f := t - float64(ll)
	g := math.Min(f, 1-f)
	ceilf, roundf := 0, 0
	if f > 0 {
		ceilf = 1
	}
	if f > 0.5 {
		roundf = 1
	}
	npwrs := 2 * (ll + 1)
	gpower := make([]float64, npwrs)
	twogpower := make([]float64, npwrs)
	onem2gpower := make([]float64, npwrs)
	gpower[0], twogpower[0], onem2gpower[0] = 1, 1, 1
	expnt := 0
	gOverN, twoGOverN, oneMinusTwoGOverN := g/fn, 2*g/fn, (1-2*g)/fn
	for m := 1; m < npwrs; m++ {
		fm := float64(m)
		gpower[m] = gpower[m-1] * gOverN / fm
		twogpower[m] = twogpower[m-1] * twoGOverN / fm
		onem2gpower[m] = onem2gpower[m-1] * oneMinusTwoGOverN / fm
	}
	V0 := make([]float64, npwrs)
	V1 := make([]float64, npwrs)
	V1[0] = 1
	V0s, V1s := 0, 0
	j1, _ := pomeranzJ1J2(0, n, ll, ceilf, roundf)
	for i := 1; i < 2*n+2; i++ {
		k1 := j1
		V0, V1 = V1, V0
		V0s, V1s = V1s, V0s
		clear(V1)
		var j2 int
		j1, j2 = pomeranzJ1J2(i, n, ll, ceilf, roundf)
		var pwrs []float64
		switch {
		case i == 1 || i == 2*n+1:
			pwrs = gpower
		case i%2 == 1:
			pwrs = twogpower
		default:
			pwrs = onem2gpower
		}
		ln2 := j2 - k1 + 1
		if ln2 > 0 {
			a := pySlice(V0, k1-V0s, k1-V0s+ln2)
			b := pySlice(pwrs, 0, ln2)
			conv := convolve(a, b)
			convStart := j1 - k1
			convLen := j2 - j1 + 1
			src := pySlice(conv, convStart, convStart+convLen)
			copy(V1[:min(convLen, len(V1))], src)
			mx := V1[0]
			for _, v := range V1 {
				mx = math.Max(mx, v)
			}
			if 0 < mx && mx < em128 {
				for i := range V1 {
					V1[i] *= ep128
				}
				expnt -= e128
			}
			V1s = V0s + j1 - k1
		}
	}
	ans := V1[n-V1s]
	for m := 1; m <= n; m++ {
		if math.Abs(ans) > ep128 {
			ans *= em128
			expnt += e128
		}
		ans *= float64(m)
	}
	if expnt != 0 {
		ans = math.Ldexp(ans, expnt)
	}
	return clip01(ans)
}

// pySlice is s[lo:hi] with Python's clamping of out-of-range bounds (both non-negative here).
func pySlice(s []float64, lo, hi int) []float64 {
	lo = min(max(lo, 0), len(s))
	hi = min(max(hi, lo), len(s))
	return s[lo:hi]
}

// convolve is numpy.convolve(a, b) in "full" mode.
func convolve(a, b []float64) []float64 {
	if len(a) == 0 || len(b) == 0 {
		return nil
	}
	out := make([]float64, len(a)+len(b)-1)
	for i, x := range a {
		for j, y := range b {
			out[i+j] += x * y
		}
	}
	return out
}

// kolmognPelzGood is the Pelz–Good (1976) approximation to Pr(D_n <= x).
func kolmognPelzGood(n int, x float64) float64 {
	if x <= 0 {
		return 0
	}
	if x >= 1 {
		return 1
	}
	fn := float64(n)
	z := math.Sqrt(fn) * x
	zsquared, zthree, zfour, zsix := z*z, z*z*z, math.Pow(z, 4), math.Pow(z, 6)
	qlog := -math.Pi * math.Pi / 8 / zsquared
	if qlog < minLog {
		return 0
	}
	q := math.Exp(qlog)
	pi2, pi4, pi6 := math.Pi*math.Pi, math.Pow(math.Pi, 4), math.Pow(math.Pi, 6)
	k1a := -zsquared
	k1b := pi2 / 4
	k2a := 6*zsix + 2*zfour
	k2b := (2*zfour - 5*zsquared) * pi2 / 4
	k2c := pi4 * (1 - 2*zsquared) / 16
	k3d := pi6 * (5 - 30*zsquared) / 64
	k3c := pi4 * (-60*zsquared + 212*zfour) / 16
	k3b := pi2 * (135*zfour - 96*zsix) / 4
	k3a := -30*zsix - 90*math.Pow(z, 8)
	var K [4]float64
	maxk := int(math.Ceil(16 * z / math.Pi))
	for k := maxk; k > 0; k-- {
		m := float64(2*k - 1)
		msquared, mfour, msix := m*m, math.Pow(m, 4), math.Pow(m, 6)
		qpower := math.Pow(q, float64(8*k))
		coeffs := [4]float64{1, k1a + k1b*msquared, k2a + k2b*msquared + k2c*mfour, k3a + k3b*msquared + k3c*mfour + k3d*msix}
		for i := range K {
			K[i] = K[i]*qpower + coeffs[i]
		}
	}
	den := [4]float64{z, 6 * zfour, 72 * math.Pow(z, 7), 6480 * math.Pow(z, 10)}
	for i := range K {
		K[i] = K[i] * q * sqrt2Pi / den[i]
	}
	q = math.Exp(-pi2 / 2 / zsquared)
	var k2extra, k3extra float64
	sqrt3z := sqrt3 * z
	for k := maxk; k > 0; k-- {
		fk := float64(k)
		ksq := fk * fk
		qp := math.Pow(q, ksq)
		kspi := math.Pi * fk
		k2extra += ksq * qp
		k3extra += (sqrt3z + kspi) * (sqrt3z - kspi) * ksq * qp
	}
	K[2] += k2extra * pi2 * sqrt2Pi / (-36 * zthree)
	K[3] += k3extra * pi2 * sqrt2Pi / (216 * zsix)
	var sum float64
	for i := range K {
		sum += K[i] / math.Pow(fn, float64(i)/2)
	}
	return sum
}

//! Exact, order-independent summation of `f64` values.
//!
//! Floating-point addition is not associative, so a parallel sum depends on
//! how rows were split across threads and in which order partial sums were
//! merged. [`ExactSum`] keeps the sum as a fixed-point integer in units of
//! 2^-1074 (the smallest subnormal), which every finite `f64` is a whole
//! multiple of, so adding and merging are integer additions: exact,
//! associative and commutative. [`ExactSum::value`] rounds the exact sum to
//! the nearest `f64` (ties to even) once, at the end. The result is the same
//! bits whatever the order, partitioning or thread count; it is also at least
//! as accurate as any naive sum.
//!
//! Digits are 32 bits wide and stored in `i64` limbs, so 2^30 additions fit
//! before carries have to be propagated.

use smallvec::SmallVec;

const DIGIT_BITS: u32 = 32;
/// Digits held without a heap allocation: sums of values within about 2^100
/// of each other (the usual case: one group's amounts) never allocate.
const INLINE_DIGITS: usize = 5;
const DIGIT_MASK: i64 = (1 << DIGIT_BITS) - 1;
/// Additions allowed between two carry propagations.
const MAX_PENDING: u32 = 1 << 30;

/// An exact sum of `f64` values; see the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ExactSum {
    /// Digit index of `limbs[0]` (digit `i` weighs 2^(32 i - 1074)).
    lo: i32,
    /// Little-endian digits. After [`Self::normalise`] every limb but the
    /// last is in `[0, 2^32)` and the last one carries the sign.
    limbs: SmallVec<[i64; INLINE_DIGITS]>,
    pending: u32,
    /// Whether any value (even zero) was added; an empty sum is NULL.
    any: bool,
    nan: bool,
    pos_inf: bool,
    neg_inf: bool,
}

impl ExactSum {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether no value was added.
    pub fn is_empty(&self) -> bool {
        !self.any
    }

    /// Adds `x` exactly.
    #[inline]
    pub fn add(&mut self, x: f64) {
        self.any = true;
        if x == 0.0 {
            return;
        }
        if !x.is_finite() {
            if x.is_nan() {
                self.nan = true;
            } else if x > 0.0 {
                self.pos_inf = true;
            } else {
                self.neg_inf = true;
            }
            return;
        }
        let bits = x.to_bits();
        let negative = bits >> 63 == 1;
        let biased = ((bits >> 52) & 0x7ff) as i32;
        let mut mantissa = bits & ((1u64 << 52) - 1);
        // Bit position of the mantissa's lowest bit, in units of 2^-1074.
        let position = if biased == 0 {
            0
        } else {
            mantissa |= 1u64 << 52;
            biased - 1
        };
        let index = position / DIGIT_BITS as i32;
        let wide = (mantissa as u128) << (position % DIGIT_BITS as i32);
        let digits = [
            (wide & DIGIT_MASK as u128) as i64,
            ((wide >> DIGIT_BITS) & DIGIT_MASK as u128) as i64,
            (wide >> (2 * DIGIT_BITS)) as i64,
        ];
        self.reserve(index, index + 3);
        let base = (index - self.lo) as usize;
        for (k, d) in digits.into_iter().enumerate() {
            if negative {
                self.limbs[base + k] -= d;
            } else {
                self.limbs[base + k] += d;
            }
        }
        self.pending += 1;
        if self.pending >= MAX_PENDING {
            self.normalise();
        }
    }

    /// Adds `x * y` exactly (the product's rounding error is added too).
    pub fn add_product(&mut self, x: f64, y: f64) {
        let p = x * y;
        if !p.is_finite() {
            self.add(p);
            return;
        }
        self.add(p);
        self.add(x.mul_add(y, -p));
    }

    /// Adds another exact sum.
    pub fn merge(&mut self, other: &ExactSum) {
        self.any |= other.any;
        self.nan |= other.nan;
        self.pos_inf |= other.pos_inf;
        self.neg_inf |= other.neg_inf;
        if other.limbs.is_empty() {
            return;
        }
        self.normalise();
        let hi = other.lo + other.limbs.len() as i32;
        self.reserve(other.lo, hi);
        let base = (other.lo - self.lo) as usize;
        for (k, d) in other.limbs.iter().enumerate() {
            self.limbs[base + k] += d;
        }
        self.pending = other.pending.max(1) + 1;
        self.normalise();
    }

    /// Makes room for digits `from..to`.
    #[inline]
    fn reserve(&mut self, from: i32, to: i32) {
        if self.limbs.is_empty() {
            self.lo = from;
            self.limbs.resize((to - from) as usize, 0);
            return;
        }
        if from < self.lo {
            let extra = (self.lo - from) as usize;
            self.limbs.insert_many(0, std::iter::repeat_n(0, extra));
            self.lo = from;
        }
        let hi = self.lo + self.limbs.len() as i32;
        if to > hi {
            self.limbs.resize(self.limbs.len() + (to - hi) as usize, 0);
        }
    }

    /// Propagates carries so that every limb but the last is a digit in
    /// `[0, 2^32)`; the last limb is signed.
    fn normalise(&mut self) {
        let mut carry = 0i64;
        for limb in &mut self.limbs {
            let v = *limb + carry;
            *limb = v & DIGIT_MASK;
            carry = v >> DIGIT_BITS;
        }
        while carry > 0 {
            self.limbs.push(carry & DIGIT_MASK);
            carry >>= DIGIT_BITS;
        }
        if carry < 0 {
            self.limbs.push(carry);
        }
        while self.limbs.len() > 1 && self.limbs.last() == Some(&0) {
            self.limbs.pop();
        }
        self.pending = 0;
    }

    /// The exact sum rounded to the nearest `f64` (ties to even), or `None`
    /// when nothing was added.
    pub fn value(&self) -> Option<f64> {
        if !self.any {
            return None;
        }
        if self.nan || (self.pos_inf && self.neg_inf) {
            return Some(f64::NAN);
        }
        if self.pos_inf {
            return Some(f64::INFINITY);
        }
        if self.neg_inf {
            return Some(f64::NEG_INFINITY);
        }
        let mut n = self.clone();
        n.normalise();
        let negative = n.limbs.last().is_some_and(|&d| d < 0);
        if negative {
            for limb in &mut n.limbs {
                *limb = -*limb;
            }
            n.normalise();
        }
        let Some(top) = n.limbs.iter().rposition(|&d| d != 0) else {
            return Some(0.0);
        };
        // The top four digits (at least 97 significant bits), with a sticky
        // bit for anything below, round exactly like the whole number.
        let digit = |i: isize| -> u128 {
            if i < 0 {
                0
            } else {
                n.limbs[i as usize] as u128
            }
        };
        let t = top as isize;
        let mut window = 0u128;
        for i in (t - 3..=t).rev() {
            window = (window << DIGIT_BITS) | digit(i);
        }
        if t >= 4 && n.limbs[..(t - 3) as usize].iter().any(|&d| d != 0) {
            window |= 1;
        }
        let exponent = (t - 3 + n.lo as isize) * DIGIT_BITS as isize - 1074;
        let magnitude = scale(window as f64, exponent as i32);
        Some(if negative { -magnitude } else { magnitude })
    }

    /// The exact sum as a double-double `(hi, lo)` with `hi + lo` equal to
    /// the sum to about 106 bits; `None` when nothing was added.
    pub fn value_dd(&self) -> Option<(f64, f64)> {
        let hi = self.value()?;
        if !hi.is_finite() {
            return Some((hi, 0.0));
        }
        let mut rest = self.clone();
        rest.add(-hi);
        Some((hi, rest.value().unwrap_or(0.0)))
    }

    /// A compact byte encoding, used as the state of partial aggregates.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut n = self.clone();
        n.normalise();
        let flags = u8::from(n.any)
            | (u8::from(n.nan) << 1)
            | (u8::from(n.pos_inf) << 2)
            | (u8::from(n.neg_inf) << 3);
        let mut out = Vec::with_capacity(5 + 8 * n.limbs.len());
        out.push(flags);
        out.extend_from_slice(&n.lo.to_le_bytes());
        for d in &n.limbs {
            out.extend_from_slice(&d.to_le_bytes());
        }
        out
    }

    /// Decodes [`Self::to_bytes`]; `None` for bytes it did not write.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&flags, rest) = bytes.split_first()?;
        if rest.len() < 4 || (rest.len() - 4) % 8 != 0 {
            return None;
        }
        let lo = i32::from_le_bytes(rest[..4].try_into().ok()?);
        let limbs = rest[4..]
            .chunks_exact(8)
            .map(|c| c.try_into().map(i64::from_le_bytes))
            .collect::<Result<SmallVec<_>, _>>()
            .ok()?;
        Some(Self {
            lo,
            limbs,
            pending: 1,
            any: flags & 1 != 0,
            nan: flags & 2 != 0,
            pos_inf: flags & 4 != 0,
            neg_inf: flags & 8 != 0,
        })
    }

    /// Heap bytes held.
    pub fn heap_size(&self) -> usize {
        if self.limbs.spilled() {
            self.limbs.capacity() * 8
        } else {
            0
        }
    }
}

/// `x * 2^e`, exact unless the result underflows or overflows.
fn scale(mut x: f64, mut e: i32) -> f64 {
    while e > 1000 {
        x *= f64::powi(2.0, 1000);
        e -= 1000;
    }
    while e < -1000 {
        // Keep precision while x is large, lose it only once subnormal.
        x *= f64::powi(2.0, -1000);
        e += 1000;
    }
    x * f64::powi(2.0, e)
}

/// The population variance of values whose exact sum is `s1`, exact sum of
/// squares is `s2` and count is `n`, computed in double-double arithmetic
/// from the exact sums; the same bits whatever the order of the values.
pub fn variance(s1: &ExactSum, s2: &ExactSum, n: u64) -> Option<f64> {
    if n == 0 {
        return None;
    }
    let (a, b) = (s1.value_dd()?, s2.value_dd()?);
    if !a.0.is_finite() || !b.0.is_finite() {
        return Some(f64::NAN);
    }
    let n = n as f64;
    let mean = dd_div(a, n);
    let square_mean = dd_div(b, n);
    let v = dd_sub(square_mean, dd_mul(mean, mean));
    Some((v.0 + v.1).max(0.0))
}

type Dd = (f64, f64);

fn two_sum(a: f64, b: f64) -> Dd {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

fn quick_two_sum(a: f64, b: f64) -> Dd {
    let s = a + b;
    (s, b - (s - a))
}

fn two_prod(a: f64, b: f64) -> Dd {
    let p = a * b;
    (p, a.mul_add(b, -p))
}

fn dd_div(a: Dd, d: f64) -> Dd {
    let q1 = a.0 / d;
    let (p, e) = two_prod(q1, d);
    let (s, f) = two_sum(a.0, -p);
    let q2 = (s + (f - e + a.1)) / d;
    quick_two_sum(q1, q2)
}

fn dd_mul(a: Dd, b: Dd) -> Dd {
    let (p, e) = two_prod(a.0, b.0);
    quick_two_sum(p, e + (a.0 * b.1 + a.1 * b.0))
}

fn dd_sub(a: Dd, b: Dd) -> Dd {
    let (s, e) = two_sum(a.0, -b.0);
    quick_two_sum(s, e + (a.1 - b.1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sum(xs: &[f64]) -> Option<f64> {
        let mut s = ExactSum::new();
        xs.iter().for_each(|&x| s.add(x));
        s.value()
    }

    #[test]
    fn empty_is_none_and_zero_is_zero() {
        assert_eq!(sum(&[]), None);
        assert_eq!(sum(&[0.0]), Some(0.0));
        assert_eq!(sum(&[1.5, -1.5]), Some(0.0));
    }

    #[test]
    fn cancellation_that_naive_sums_get_wrong() {
        // Naively: (1e16 + 1) - 1e16 = 0 and 0.1 + 0.2 + 0.3 != 0.6.
        assert_eq!(sum(&[1e16, 1.0, -1e16]), Some(1.0));
        assert_eq!(sum(&[1e300, 1e-300, -1e300]), Some(1e-300));
        // 0.1 + 0.2 - 0.3 is not 0 in binary; the exact value by integers.
        assert_eq!(
            sum(&[0.1, 0.2, -0.3]).map(f64::to_bits),
            Some(exact_small(&[0.1, 0.2, -0.3]).to_bits())
        );
    }

    #[test]
    fn non_finite_values() {
        assert!(sum(&[1.0, f64::NAN]).unwrap().is_nan());
        assert_eq!(sum(&[1.0, f64::INFINITY]), Some(f64::INFINITY));
        assert!(sum(&[f64::INFINITY, f64::NEG_INFINITY]).unwrap().is_nan());
        assert_eq!(sum(&[f64::MAX, f64::MAX]), Some(f64::INFINITY));
        assert_eq!(sum(&[f64::MAX, f64::MAX, -f64::MAX]), Some(f64::MAX));
    }

    #[test]
    fn subnormals_and_extremes() {
        let tiny = f64::from_bits(1);
        assert_eq!(sum(&[tiny, tiny]), Some(2.0 * tiny));
        assert_eq!(
            sum(&[f64::MIN_POSITIVE, -tiny]),
            Some(f64::MIN_POSITIVE - tiny)
        );
        assert_eq!(sum(&[-f64::MAX]), Some(-f64::MAX));
    }

    #[test]
    fn carries_are_propagated_before_limbs_overflow() {
        let mut s = ExactSum::new();
        s.pending = MAX_PENDING - 2;
        let x = 4294967295.0 * 2f64.powi(-40); // a full digit of ones
        for _ in 0..10 {
            s.add(x);
        }
        assert_eq!(s.pending, 8);
        assert_eq!(s.value(), Some(x * 10.0));
    }

    /// The correctly rounded sum of values that are multiples of 2^-60 and
    /// below 2^60, computed with `i128`.
    fn exact_small(xs: &[f64]) -> f64 {
        let unit = 2f64.powi(60);
        let total: i128 = xs.iter().map(|&x| (x * unit) as i128).sum();
        // i128 -> f64 rounds to nearest even; dividing by 2^60 is exact.
        total as f64 / unit
    }

    fn small_value() -> impl Strategy<Value = f64> {
        // Multiples of 2^-60 below 2^60 in magnitude, of every scale.
        (any::<i64>(), -60i32..=0).prop_map(|(m, e)| (m >> 8) as f64 * 2f64.powi(e))
    }

    proptest! {
        #[test]
        fn correctly_rounded(xs in prop::collection::vec(small_value(), 0..60)) {
            let expected = (!xs.is_empty()).then(|| exact_small(&xs));
            prop_assert_eq!(sum(&xs).map(f64::to_bits), expected.map(f64::to_bits));
        }

        #[test]
        fn order_and_split_do_not_matter(
            xs in prop::collection::vec(any::<f64>().prop_filter("finite", |x| x.is_finite()), 1..80),
            split in 0usize..80,
            seed in any::<u64>(),
        ) {
            let whole = sum(&xs).unwrap();
            let mut shuffled = xs.clone();
            // A seeded Fisher-Yates shuffle.
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13; state ^= state >> 7; state ^= state << 17;
                shuffled.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let k = split.min(shuffled.len());
            let (mut a, mut b) = (ExactSum::new(), ExactSum::new());
            shuffled[..k].iter().for_each(|&x| a.add(x));
            shuffled[k..].iter().for_each(|&x| b.add(x));
            let b = ExactSum::from_bytes(&b.to_bytes()).unwrap();
            a.merge(&b);
            prop_assert_eq!(a.value().unwrap().to_bits(), whole.to_bits());
        }

        #[test]
        fn variance_matches_two_pass(xs in prop::collection::vec(-1e6f64..1e6, 1..50)) {
            let (mut s1, mut s2) = (ExactSum::new(), ExactSum::new());
            for &x in &xs { s1.add(x); s2.add_product(x, x); }
            let n = xs.len() as f64;
            let mean = xs.iter().sum::<f64>() / n;
            let two_pass = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
            let v = variance(&s1, &s2, xs.len() as u64).unwrap();
            prop_assert!((v - two_pass).abs() <= 1e-9 * two_pass.max(1.0), "{v} vs {two_pass}");
        }
    }
}

//! INCRBYFLOAT's arithmetic, reproducing what Redis does with the C `long double` of x86-64
//! Linux (the 80-bit x87 format: 64-bit mantissa, 15-bit exponent): `strtold` to parse, one
//! rounded addition, `printf("%.17Lf")` with trailing zeros removed to print. Redis's replies
//! carry the traces of that format (`1000000 + 0.1` answers `1000000.10000000000002274`), so a
//! plain `f64` would answer differently; this module computes the same bits in software, with
//! round-to-nearest-even at every step, using a small big-integer for the exact parts.

use std::cmp::Ordering;

/// Exponent of the lowest mantissa bit of the smallest subnormal (2^-16445).
const MIN_LSB: i64 = -16445;
/// Exponent of the top mantissa bit of the largest finite value (just under 2^16384).
const MAX_TOP: i64 = 16383;
/// `strtold` input longer than this is refused by Redis (`MAX_LONG_DOUBLE_CHARS`).
const MAX_CHARS: usize = 5 * 1024;

/// An 80-bit extended-precision value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LongDouble {
    /// Zero, with its sign.
    Zero(bool),
    /// `(-1)^neg * mant * 2^exp`, with `mant` of at most 64 bits and `exp >= -16445`.
    Finite {
        /// Sign.
        neg: bool,
        /// Mantissa (not normalised for subnormals).
        mant: u64,
        /// Weight of the mantissa's lowest bit.
        exp: i64,
    },
    /// An infinity, with its sign.
    Inf(bool),
    /// Not a number (only an addition of opposite infinities makes one).
    NaN,
}

impl LongDouble {
    /// Parses the way Redis's `string2ld` does: `strtold` on the whole string, refusing leading
    /// space, trailing bytes, NaN, overflow and underflow to zero. `None` = "not a valid float".
    pub(super) fn parse(s: &[u8]) -> Option<LongDouble> {
        if s.is_empty() || s.len() >= MAX_CHARS || matches!(s[0], b' ' | b'\t'..=b'\r') {
            return None;
        }
        let (neg, rest) = match s[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        if rest.eq_ignore_ascii_case(b"inf") || rest.eq_ignore_ascii_case(b"infinity") {
            return Some(LongDouble::Inf(neg));
        }
        let v = if rest.len() > 2 && rest[0] == b'0' && (rest[1] | 0x20) == b'x' {
            parse_hex(neg, &rest[2..])?
        } else {
            parse_decimal(neg, rest)?
        };
        match v {
            // Overflow (ERANGE with HUGE_VAL) and a non-zero input rounding to zero (ERANGE
            // with zero) are both refused by string2ld.
            LongDouble::Inf(_) | LongDouble::NaN => None,
            v => Some(v),
        }
    }

    /// The correctly rounded sum.
    pub(super) fn add(self, other: LongDouble) -> LongDouble {
        use LongDouble::*;
        match (self, other) {
            (NaN, _) | (_, NaN) => NaN,
            (Inf(a), Inf(b)) if a != b => NaN,
            (Inf(a), _) | (_, Inf(a)) => Inf(a),
            (Zero(a), Zero(b)) => Zero(a && b),
            (Zero(_), x) | (x, Zero(_)) => x,
            (
                Finite {
                    neg: na,
                    mant: ma,
                    exp: ea,
                },
                Finite {
                    neg: nb,
                    mant: mb,
                    exp: eb,
                },
            ) => {
                let top = |m: u64, e: i64| e + 63 - m.leading_zeros() as i64;
                // A term below a quarter of the other's last place cannot change it.
                if top(mb, eb) < ea - 2 {
                    return self;
                }
                if top(ma, ea) < eb - 2 {
                    return other;
                }
                let e = ea.min(eb);
                let a = Big::from_u64(ma).shl((ea - e) as usize);
                let b = Big::from_u64(mb).shl((eb - e) as usize);
                if na == nb {
                    round(na, &a.add(&b), e)
                } else {
                    match a.cmp(&b) {
                        Ordering::Equal => Zero(false),
                        Ordering::Greater => round(na, &a.sub(&b), e),
                        Ordering::Less => round(nb, &b.sub(&a), e),
                    }
                }
            }
        }
    }

    /// Whether the value is a finite number (Redis refuses to store NaN or an infinity).
    pub(super) fn is_finite(self) -> bool {
        matches!(self, LongDouble::Zero(_) | LongDouble::Finite { .. })
    }

    /// Redis's `ld2string(..., LD_STR_HUMAN)`: `%.17Lf`, trailing zeros (and a bare point)
    /// removed, and `-0` printed as `0`. Only for finite values.
    pub(super) fn to_human(self) -> String {
        let (neg, int, frac) = match self {
            LongDouble::Finite { neg, mant, exp } => {
                let (int, frac) = split_fixed17(mant, exp);
                (neg, int, frac)
            }
            _ => (false, "0".to_string(), 0),
        };
        let mut s = String::with_capacity(int.len() + 20);
        if neg {
            s.push('-');
        }
        s.push_str(&int);
        if frac != 0 {
            let digits = format!("{frac:017}");
            s.push('.');
            s.push_str(digits.trim_end_matches('0'));
        }
        if s == "-0" { "0".to_string() } else { s }
    }
}

/// The integer part (decimal) and the 17 fraction digits (as a number, rounded half to even
/// like glibc's printf) of `mant * 2^exp`.
fn split_fixed17(mant: u64, exp: i64) -> (String, u64) {
    const SCALE: u128 = 100_000_000_000_000_000; // 10^17
    if exp >= 0 {
        return (Big::from_u64(mant).shl(exp as usize).to_decimal(), 0);
    }
    let f = (-exp) as u32;
    let (mut int, frac_bits) = if f >= 64 {
        (0u64, mant as u128)
    } else {
        (mant >> f, (mant & ((1u64 << f) - 1)) as u128)
    };
    // frac_bits * 10^17 < 2^121, so for f >= 122 it is below half of 2^f: rounds to 0.
    let mut frac = 0u64;
    if f < 122 {
        let prod = frac_bits * SCALE;
        let mut q = prod >> f;
        let r = prod & ((1u128 << f) - 1);
        let half = 1u128 << (f - 1);
        if r > half || (r == half && q & 1 == 1) {
            q += 1;
        }
        if q == SCALE {
            int += 1;
            q = 0;
        }
        frac = q as u64;
    }
    (int.to_string(), frac)
}

/// Rounds `n * 2^e` to the nearest long double (ties to even), flushing to zero or infinity
/// past the format's range.
fn round(neg: bool, n: &Big, e: i64) -> LongDouble {
    let bits = n.bits() as i64;
    if bits == 0 {
        return LongDouble::Zero(neg);
    }
    let lsb = (e + bits - 64).max(MIN_LSB);
    let shift = lsb - e;
    let mut lsb = lsb;
    let mut mant: u128 = if shift <= 0 {
        (n.low_u64() as u128) << (-shift) as u32
    } else {
        let shift = shift as usize;
        let m = n.bits_from(shift) as u128;
        let half = n.bit(shift - 1);
        let sticky = n.any_below(shift - 1);
        if half && (sticky || m & 1 == 1) {
            m + 1
        } else {
            m
        }
    };
    if mant >> 64 != 0 {
        mant >>= 1;
        lsb += 1;
    }
    if mant == 0 {
        return LongDouble::Zero(neg);
    }
    let top = lsb + 127 - mant.leading_zeros() as i64;
    if top > MAX_TOP {
        return LongDouble::Inf(neg);
    }
    LongDouble::Finite {
        neg,
        mant: mant as u64,
        exp: lsb,
    }
}

/// Reads a run of digits of `radix` from `s` at `*i`, feeding each to `f`; returns how many.
fn digits(s: &[u8], i: &mut usize, radix: u32, mut f: impl FnMut(u32)) -> usize {
    let start = *i;
    while let Some(d) = s.get(*i).and_then(|&c| (c as char).to_digit(radix)) {
        f(d);
        *i += 1;
    }
    *i - start
}

/// An optional exponent (`e`/`p` then an optionally signed decimal) ending the string; `None`
/// when bytes are left over, as strtold would leave them unconsumed.
fn exponent(s: &[u8], mut i: usize, marker: u8) -> Option<i64> {
    if i == s.len() {
        return Some(0);
    }
    if s[i] | 0x20 != marker {
        return None;
    }
    i += 1;
    let neg = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut v: i64 = 0;
    if digits(s, &mut i, 10, |d| v = (v * 10 + d as i64).min(1 << 40)) == 0 || i != s.len() {
        return None;
    }
    Some(if neg { -v } else { v })
}

fn parse_decimal(neg: bool, s: &[u8]) -> Option<LongDouble> {
    let mut m = Big::default();
    let mut chunk = 0u32;
    let mut chunk_len = 0u32;
    let mut push = |d: u32| {
        chunk = chunk * 10 + d;
        chunk_len += 1;
        if chunk_len == 9 {
            m.mul_add(1_000_000_000, chunk);
            chunk = 0;
            chunk_len = 0;
        }
    };
    let mut i = 0;
    let int_digits = digits(s, &mut i, 10, &mut push);
    let mut frac_digits = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = digits(s, &mut i, 10, &mut push);
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    m.mul_add(10u32.pow(chunk_len), chunk);
    let e10 = exponent(s, i, b'e')? - frac_digits as i64;
    if m.is_zero() {
        return Some(LongDouble::Zero(neg));
    }
    // Decimal magnitude bounds: past them the result is surely infinite or zero.
    let magnitude = m.decimal_digits_estimate() as i64 + e10;
    if magnitude > 4940 {
        return Some(LongDouble::Inf(neg));
    }
    if magnitude < -4960 {
        return None; // underflow to zero
    }
    if e10 >= 0 {
        let mut n = m;
        n.mul_pow10(e10 as u32);
        return nonzero(round(neg, &n, 0));
    }
    // m / 10^k scaled by 2^sh so the quotient has 66 or 67 bits, plus a sticky bit for the
    // remainder: enough to round correctly.
    let mut d = Big::from_u64(1);
    d.mul_pow10((-e10) as u32);
    let sh = (d.bits() + 66) as i64 - m.bits() as i64;
    let (n, d) = if sh >= 0 {
        (m.shl(sh as usize), d)
    } else {
        (m, d.shl((-sh) as usize))
    };
    let (q, exact) = n.div_small_quotient(&d);
    let q = Big::from_u128(q).shl(1).add(&Big::from_u64(!exact as u64));
    nonzero(round(neg, &q, -sh - 1))
}

/// A non-zero input that rounds to zero is an underflow, which string2ld refuses.
fn nonzero(v: LongDouble) -> Option<LongDouble> {
    match v {
        LongDouble::Zero(_) => None,
        v => Some(v),
    }
}

fn parse_hex(neg: bool, s: &[u8]) -> Option<LongDouble> {
    let mut m = Big::default();
    let mut i = 0;
    let int_digits = digits(s, &mut i, 16, |d| m.mul_add(16, d));
    let mut frac_digits = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = digits(s, &mut i, 16, |d| m.mul_add(16, d));
    }
    if int_digits + frac_digits == 0 {
        return None;
    }
    let e2 = exponent(s, i, b'p')? - 4 * frac_digits as i64;
    if m.is_zero() {
        return Some(LongDouble::Zero(neg));
    }
    nonzero(round(neg, &m, e2))
}

/// Just enough unsigned big-integer arithmetic for exact parsing and printing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Big {
    /// Little-endian 32-bit limbs, no trailing zero limbs.
    limbs: Vec<u32>,
}

impl Big {
    fn from_u64(v: u64) -> Big {
        Big::from_u128(v as u128)
    }

    fn from_u128(mut v: u128) -> Big {
        let mut limbs = Vec::new();
        while v != 0 {
            limbs.push(v as u32);
            v >>= 32;
        }
        Big { limbs }
    }

    fn is_zero(&self) -> bool {
        self.limbs.is_empty()
    }

    fn trim(&mut self) {
        while self.limbs.last() == Some(&0) {
            self.limbs.pop();
        }
    }

    fn bits(&self) -> usize {
        match self.limbs.last() {
            None => 0,
            Some(&top) => self.limbs.len() * 32 - top.leading_zeros() as usize,
        }
    }

    /// Decimal digits of the value, give or take one.
    fn decimal_digits_estimate(&self) -> usize {
        (self.bits() as f64 * std::f64::consts::LOG10_2) as usize + 1
    }

    fn bit(&self, i: usize) -> bool {
        self.limbs
            .get(i / 32)
            .is_some_and(|&l| (l >> (i % 32)) & 1 == 1)
    }

    /// Whether any bit below `i` is set.
    fn any_below(&self, i: usize) -> bool {
        let (whole, part) = (i / 32, i % 32);
        self.limbs[..whole.min(self.limbs.len())]
            .iter()
            .any(|&l| l != 0)
            || (part > 0
                && self
                    .limbs
                    .get(whole)
                    .is_some_and(|&l| l & ((1 << part) - 1) != 0))
    }

    /// The 64 bits starting at bit `from`.
    fn bits_from(&self, from: usize) -> u64 {
        (0..64).fold(0u64, |acc, k| acc | ((self.bit(from + k) as u64) << k))
    }

    fn low_u64(&self) -> u64 {
        self.bits_from(0)
    }

    /// `self = self * mul + add`.
    fn mul_add(&mut self, mul: u32, add: u32) {
        let mut carry = add as u64;
        for l in &mut self.limbs {
            let v = *l as u64 * mul as u64 + carry;
            *l = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.limbs.push(carry as u32);
        }
        self.trim();
    }

    fn mul_pow10(&mut self, mut k: u32) {
        while k >= 9 {
            self.mul_add(1_000_000_000, 0);
            k -= 9;
        }
        self.mul_add(10u32.pow(k), 0);
    }

    fn shl(&self, n: usize) -> Big {
        if self.is_zero() {
            return Big::default();
        }
        let (whole, part) = (n / 32, n % 32);
        let mut limbs = vec![0u32; whole];
        let mut carry = 0u32;
        for &l in &self.limbs {
            if part == 0 {
                limbs.push(l);
            } else {
                limbs.push((l << part) | carry);
                carry = l >> (32 - part);
            }
        }
        if carry != 0 {
            limbs.push(carry);
        }
        Big { limbs }
    }

    fn add(&self, o: &Big) -> Big {
        let mut limbs = Vec::with_capacity(self.limbs.len().max(o.limbs.len()) + 1);
        let mut carry = 0u64;
        for i in 0..self.limbs.len().max(o.limbs.len()) {
            let v = *self.limbs.get(i).unwrap_or(&0) as u64
                + *o.limbs.get(i).unwrap_or(&0) as u64
                + carry;
            limbs.push(v as u32);
            carry = v >> 32;
        }
        if carry != 0 {
            limbs.push(carry as u32);
        }
        Big { limbs }
    }

    /// `self - o`, for `self >= o`.
    fn sub(&self, o: &Big) -> Big {
        let mut limbs = self.limbs.clone();
        let mut borrow = 0i64;
        for (i, l) in limbs.iter_mut().enumerate() {
            let v = *l as i64 - *o.limbs.get(i).unwrap_or(&0) as i64 - borrow;
            borrow = (v < 0) as i64;
            *l = (v + (borrow << 32)) as u32;
        }
        let mut r = Big { limbs };
        r.trim();
        r
    }

    fn cmp(&self, o: &Big) -> Ordering {
        self.limbs
            .len()
            .cmp(&o.limbs.len())
            .then_with(|| self.limbs.iter().rev().cmp(o.limbs.iter().rev()))
    }

    /// `self / d` when the quotient fits 128 bits (restoring division over its bits), and
    /// whether the division was exact.
    fn div_small_quotient(&self, d: &Big) -> (u128, bool) {
        let mut rem = self.clone();
        let mut q = 0u128;
        let span = self.bits().saturating_sub(d.bits());
        for i in (0..=span).rev() {
            let t = d.shl(i);
            if rem.cmp(&t) != Ordering::Less {
                rem = rem.sub(&t);
                q |= 1 << i;
            }
        }
        (q, rem.is_zero())
    }

    fn to_decimal(&self) -> String {
        if self.is_zero() {
            return "0".into();
        }
        let mut n = self.clone();
        let mut chunks = Vec::new();
        while !n.is_zero() {
            let mut rem = 0u64;
            for l in n.limbs.iter_mut().rev() {
                let v = (rem << 32) | *l as u64;
                *l = (v / 1_000_000_000) as u32;
                rem = v % 1_000_000_000;
            }
            n.trim();
            chunks.push(rem as u32);
        }
        let mut s = chunks.pop().map(|c| c.to_string()).unwrap_or_default();
        for c in chunks.iter().rev() {
            s.push_str(&format!("{c:09}"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(stored: &str, by: &str) -> String {
        let a = LongDouble::parse(stored.as_bytes()).expect("stored");
        let b = LongDouble::parse(by.as_bytes()).expect("increment");
        let sum = a.add(b);
        assert!(sum.is_finite(), "{stored} + {by}");
        sum.to_human()
    }

    #[test]
    fn sums_match_redis_long_double_replies() {
        // Every expected string is what redis-server 7.0.15 on x86-64 answered.
        assert_eq!(incr("1000000", "0.1"), "1000000.10000000000002274");
        assert_eq!(incr("17179869184", "0.1"), "17179869184.09999999962747097");
        assert_eq!(incr("17179869184", "1.5"), "17179869185.5");
        assert_eq!(incr("0.1", "0.1"), "0.2");
        assert_eq!(incr("0.2", "0.1"), "0.3");
        assert_eq!(incr("1", "-1.1"), "-0.1");
        assert_eq!(incr("0", "0x10"), "16");
        assert_eq!(incr("0", "1e-20"), "0");
        assert_eq!(incr("0", "-5e-18"), "0");
        assert_eq!(
            incr("3000", "1.23456789012345678901234"),
            "3001.23456789012345669"
        );
        assert_eq!(incr("0", "1e30"), "1000000000000000000024696061952");
        assert_eq!(
            incr("0", "1e300"),
            "1000000000000000000008997324079559193870523944273290747938260082321265646596180935755849152083750497190350372508614274835903592556184672983913096260520748646287327135641843653294084255107606016789726652932370030551382947620994540294772781889620606179267611627097410650567187386105690089424915104006144"
        );
    }

    #[test]
    fn parsing_follows_string2ld() {
        for bad in [
            "", " 1", "1 ", "abc", "1e", "1e+", ".", "-", "+-1", "0x", "nan", "NaN", "1e5000",
            "1e-5000", "1\u{0}2", "0x1p", "infinit",
        ] {
            assert_eq!(LongDouble::parse(bad.as_bytes()), None, "{bad:?}");
        }
        for good in [
            "1.",
            ".5",
            "+1.5",
            "-0",
            "1E5",
            "0x1.8p1",
            "0X.8",
            "inf",
            "-Infinity",
        ] {
            assert!(LongDouble::parse(good.as_bytes()).is_some(), "{good:?}");
        }
        assert_eq!(LongDouble::parse(b"inf"), Some(LongDouble::Inf(false)));
        assert_eq!(incr("0", "0x1.8p1"), "3");
        assert_eq!(incr("0", "1.5e3"), "1500");
        assert!(LongDouble::parse(&vec![b'1'; MAX_CHARS]).is_none());
    }

    #[test]
    fn infinities_and_overflow_are_not_finite() {
        let inf = LongDouble::parse(b"inf").unwrap();
        let one = LongDouble::parse(b"1").unwrap();
        assert!(!inf.add(one).is_finite());
        assert!(!inf.add(LongDouble::parse(b"-inf").unwrap()).is_finite());
        let big = LongDouble::parse(b"1e4932").unwrap();
        assert!(!big.add(big).is_finite());
    }

    #[test]
    fn big_integers() {
        let mut n = Big::from_u64(1);
        n.mul_pow10(30);
        assert_eq!(n.to_decimal(), format!("1{}", "0".repeat(30)));
        let (q, exact) = n.div_small_quotient(&Big::from_u64(7));
        assert_eq!(q, 10u128.pow(30) / 7);
        assert!(!exact);
        assert_eq!(n.sub(&Big::from_u64(1)).to_decimal(), "9".repeat(30));
    }
}

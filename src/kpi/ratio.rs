//! Exact rationals for rates and per-unit money, so no KPI ever passes through a float.
//!
//! A rate such as NRR is reported as `num / den` in lowest terms; `basis_points` rounds it half
//! to even for display. Money ratios (ARPA, CAC, LTV) are minor units per unit. i128 holds the
//! products of minor-unit sums (i64) with the small normalization factors used here.

use std::cmp::Ordering;
use std::fmt;
use std::ops::{Add, Mul, Sub};

/// `num / den` in lowest terms, `den > 0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ratio {
    num: i128,
    den: i128,
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    a = a.abs();
    b = b.abs();
    while b != 0 {
        let r = a % b;
        a = b;
        b = r;
    }
    a
}

impl Ratio {
    /// `None` when `den` is 0: a rate over an empty base has no value, which callers report
    /// as unavailable rather than as 0.
    pub fn new(num: i128, den: i128) -> Option<Ratio> {
        if den == 0 {
            return None;
        }
        let sign = if den < 0 { -1 } else { 1 };
        let g = gcd(num, den).max(1);
        Some(Ratio {
            num: sign * num / g,
            den: sign * den / g,
        })
    }

    pub fn from_int(n: i128) -> Ratio {
        Ratio { num: n, den: 1 }
    }

    pub fn zero() -> Ratio {
        Ratio::from_int(0)
    }

    pub fn numer(&self) -> i128 {
        self.num
    }

    pub fn denom(&self) -> i128 {
        self.den
    }

    /// `None` when dividing by zero: division is the one operation that can fail, so it
    /// is not an operator.
    pub fn checked_div(self, o: Ratio) -> Option<Ratio> {
        Ratio::new(self.num * o.den, self.den * o.num)
    }

    // Both denominators are positive, so the product is never 0.
    fn combine(self, num: i128, den: i128) -> Ratio {
        Ratio::new(num, den).unwrap_or(self)
    }

    /// Rounds half to even (MODEL.md's rule for MRR, used for every rounding here).
    pub fn round_half_even(&self) -> i128 {
        let q = self.num.div_euclid(self.den);
        let r = self.num.rem_euclid(self.den);
        match (2 * r).cmp(&self.den) {
            Ordering::Less => q,
            Ordering::Greater => q + 1,
            Ordering::Equal if q % 2 == 0 => q,
            Ordering::Equal => q + 1,
        }
    }

    /// The rate in basis points (1/10,000), rounded half to even: 0.9575 -> 9575.
    pub fn basis_points(&self) -> i128 {
        (*self * Ratio::from_int(10_000)).round_half_even()
    }
}

impl Add for Ratio {
    type Output = Ratio;
    fn add(self, o: Ratio) -> Ratio {
        self.combine(self.num * o.den + o.num * self.den, self.den * o.den)
    }
}

impl Sub for Ratio {
    type Output = Ratio;
    fn sub(self, o: Ratio) -> Ratio {
        self.combine(self.num * o.den - o.num * self.den, self.den * o.den)
    }
}

impl Mul for Ratio {
    type Output = Ratio;
    fn mul(self, o: Ratio) -> Ratio {
        self.combine(self.num * o.num, self.den * o.den)
    }
}

impl PartialOrd for Ratio {
    fn partial_cmp(&self, o: &Ratio) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

impl Ord for Ratio {
    fn cmp(&self, o: &Ratio) -> Ordering {
        (self.num * o.den).cmp(&(o.num * self.den))
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{}", self.num, self.den)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduces_and_rounds_half_to_even() {
        let r = |n, d| Ratio::new(n, d).unwrap();
        assert_eq!(r(6, -4), r(-3, 2));
        assert_eq!(r(5, 2).round_half_even(), 2);
        assert_eq!(r(7, 2).round_half_even(), 4);
        assert_eq!(r(-5, 2).round_half_even(), -2);
        assert_eq!(r(10, 3).round_half_even(), 3);
        assert_eq!(r(383, 400).basis_points(), 9575);
        assert!(Ratio::new(1, 0).is_none());
        assert!(r(1, 3) < r(1, 2));
    }
}

//! PostgreSQL's binary wire formats for the value kinds tokio-postgres has no Rust type for that
//! Spin's `spin:postgres@4.x` needs: `interval` ([`SqlInterval`]), the range types `int4range`,
//! `int8range` and `numrange` ([`SqlRange`]), and any other column as raw bytes ([`RawValue`]).
//!
//! - **interval**: 16 bytes, big-endian: microseconds (`i64`), then days (`i32`), then months
//!   (`i32`), kept apart as PostgreSQL keeps them (a month is not a fixed number of days).
//! - **range**: a flags byte (`0x01` empty, `0x02` lower inclusive, `0x04` upper inclusive,
//!   `0x08` lower unbounded, `0x10` upper unbounded), then each present bound as an `i32` byte
//!   length and the element's own binary value. PostgreSQL checks and canonicalizes what it
//!   receives (`[1,10]` of `int4range` is stored as `[1,11)`; lower above upper is an error),
//!   so parameters are sent as given.
//!
//! As in Spin, an empty range is read as two absent bounds, the same as `(,)`.

use std::error::Error as StdError;

use bytes::{Buf, BufMut, BytesMut};
use tokio_postgres::types::{FromSql, IsNull, Kind, ToSql, Type};

type BoxError = Box<dyn StdError + Sync + Send>;

const RANGE_EMPTY: u8 = 0x01;
const RANGE_LB_INC: u8 = 0x02;
const RANGE_UB_INC: u8 = 0x04;
const RANGE_LB_INF: u8 = 0x08;
const RANGE_UB_INF: u8 = 0x10;

/// Whether a range bound includes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BoundKind {
    Inclusive,
    Exclusive,
}

/// A range: each bound is its value and kind, or absent (unbounded on that side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PgRange<T> {
    pub(crate) lower: Option<(T, BoundKind)>,
    pub(crate) upper: Option<(T, BoundKind)>,
}

impl<T> PgRange<T> {
    /// Convert both bounds' values with `f`.
    pub(crate) fn map<U>(self, mut f: impl FnMut(T) -> U) -> PgRange<U> {
        PgRange {
            lower: self.lower.map(|(v, k)| (f(v), k)),
            upper: self.upper.map(|(v, k)| (f(v), k)),
        }
    }

    /// Convert both bounds' values with `f`, stopping at its first error.
    pub(crate) fn try_map<U, E>(
        self,
        mut f: impl FnMut(T) -> Result<U, E>,
    ) -> Result<PgRange<U>, E> {
        let mut bound =
            |b: Option<(T, BoundKind)>| b.map(|(v, k)| f(v).map(|v| (v, k))).transpose();
        Ok(PgRange {
            lower: bound(self.lower)?,
            upper: bound(self.upper)?,
        })
    }
}

/// A range value as PostgreSQL sends and receives it, for an element type `T` tokio-postgres
/// knows (`i32`, `i64`, `rust_decimal::Decimal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SqlRange<T>(pub(crate) PgRange<T>);

fn element_type(ty: &Type) -> Option<&Type> {
    match ty.kind() {
        Kind::Range(element) => Some(element),
        _ => None,
    }
}

impl<T: ToSql> ToSql for SqlRange<T> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let element = element_type(ty).ok_or_else(|| format!("{ty} is not a range type"))?;
        let PgRange { lower, upper } = &self.0;
        let mut flags = 0;
        match lower {
            None => flags |= RANGE_LB_INF,
            Some((_, BoundKind::Inclusive)) => flags |= RANGE_LB_INC,
            Some((_, BoundKind::Exclusive)) => {}
        }
        match upper {
            None => flags |= RANGE_UB_INF,
            Some((_, BoundKind::Inclusive)) => flags |= RANGE_UB_INC,
            Some((_, BoundKind::Exclusive)) => {}
        }
        out.put_u8(flags);
        for (value, _) in [lower, upper].into_iter().flatten() {
            let at = out.len();
            out.put_i32(0);
            if let IsNull::Yes = value.to_sql(element, out)? {
                return Err("a range bound cannot be NULL".into());
            }
            let len = i32::try_from(out.len() - at - 4).map_err(|_| "range bound too large")?;
            out[at..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        element_type(ty).is_some_and(T::accepts)
    }

    tokio_postgres::types::to_sql_checked!();
}

impl<'a, T: FromSql<'a>> FromSql<'a> for SqlRange<T> {
    fn from_sql(ty: &Type, mut raw: &'a [u8]) -> Result<Self, BoxError> {
        let element = element_type(ty).ok_or_else(|| format!("{ty} is not a range type"))?;
        if raw.is_empty() {
            return Err("range value without its flags byte".into());
        }
        let flags = raw.get_u8();
        if flags & RANGE_EMPTY != 0 {
            return Ok(Self(PgRange {
                lower: None,
                upper: None,
            }));
        }
        let mut bound = |infinite: u8, inclusive: u8| -> Result<_, BoxError> {
            if flags & infinite != 0 {
                return Ok(None);
            }
            if raw.len() < 4 {
                return Err("range bound length missing".into());
            }
            let len = usize::try_from(raw.get_i32()).map_err(|_| "range bound is NULL")?;
            if raw.len() < len {
                return Err("range bound shorter than its length".into());
            }
            let (bytes, rest) = raw.split_at(len);
            raw = rest;
            let kind = if flags & inclusive != 0 {
                BoundKind::Inclusive
            } else {
                BoundKind::Exclusive
            };
            Ok(Some((T::from_sql(element, bytes)?, kind)))
        };
        let lower = bound(RANGE_LB_INF, RANGE_LB_INC)?;
        let upper = bound(RANGE_UB_INF, RANGE_UB_INC)?;
        if !raw.is_empty() {
            return Err("trailing bytes after a range value".into());
        }
        Ok(Self(PgRange { lower, upper }))
    }

    fn accepts(ty: &Type) -> bool {
        element_type(ty).is_some_and(T::accepts)
    }
}

/// An `interval`, in PostgreSQL's three separate parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SqlInterval {
    pub(crate) micros: i64,
    pub(crate) days: i32,
    pub(crate) months: i32,
}

impl ToSql for SqlInterval {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.put_i64(self.micros);
        out.put_i32(self.days);
        out.put_i32(self.months);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }

    tokio_postgres::types::to_sql_checked!();
}

impl FromSql<'_> for SqlInterval {
    fn from_sql(_: &Type, mut raw: &[u8]) -> Result<Self, BoxError> {
        if raw.len() != 16 {
            return Err(format!("an interval is 16 bytes, got {}", raw.len()).into());
        }
        Ok(Self {
            micros: raw.get_i64(),
            days: raw.get_i32(),
            months: raw.get_i32(),
        })
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
}

/// Any value, as the bytes PostgreSQL sent (Spin's `unsupported(list<u8>)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawValue(pub(crate) Vec<u8>);

impl FromSql<'_> for RawValue {
    fn from_sql(_: &Type, raw: &[u8]) -> Result<Self, BoxError> {
        Ok(Self(raw.to_vec()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode<T: ToSql>(value: &T, ty: &Type) -> Vec<u8> {
        let mut out = BytesMut::new();
        let is_null = value.to_sql(ty, &mut out).expect("to_sql");
        assert!(matches!(is_null, IsNull::No));
        out.to_vec()
    }

    #[test]
    fn interval_is_micros_days_months() {
        let iv = SqlInterval {
            micros: 3_723_000_004,
            days: -2,
            months: 14,
        };
        let bytes = encode(&iv, &Type::INTERVAL);
        assert_eq!(
            bytes,
            [
                0, 0, 0, 0, 0xdd, 0xe8, 0x78, 0xc4, // 3_723_000_004
                0xff, 0xff, 0xff, 0xfe, // -2
                0, 0, 0, 14,
            ]
        );
        assert_eq!(
            SqlInterval::from_sql(&Type::INTERVAL, &bytes).expect("from_sql"),
            iv
        );
        assert!(SqlInterval::from_sql(&Type::INTERVAL, &bytes[..15]).is_err());
        assert!(!<SqlInterval as ToSql>::accepts(&Type::INT8));
    }

    #[test]
    fn int4range_flags_and_bounds() {
        let range = SqlRange(PgRange {
            lower: Some((1i32, BoundKind::Inclusive)),
            upper: Some((10i32, BoundKind::Exclusive)),
        });
        let bytes = encode(&range, &Type::INT4_RANGE);
        assert_eq!(
            bytes,
            [0x02, 0, 0, 0, 4, 0, 0, 0, 1, 0, 0, 0, 4, 0, 0, 0, 10]
        );
        assert_eq!(
            SqlRange::<i32>::from_sql(&Type::INT4_RANGE, &bytes).expect("from_sql"),
            range
        );
        assert!(<SqlRange<i32> as ToSql>::accepts(&Type::INT4_RANGE));
        assert!(!<SqlRange<i32> as ToSql>::accepts(&Type::INT8_RANGE));
        assert!(!<SqlRange<i32> as ToSql>::accepts(&Type::INT4));
    }

    #[test]
    fn unbounded_and_empty_ranges() {
        let upper_only = SqlRange(PgRange {
            lower: None,
            upper: Some((7i64, BoundKind::Inclusive)),
        });
        let bytes = encode(&upper_only, &Type::INT8_RANGE);
        assert_eq!(bytes, [0x08 | 0x04, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(
            SqlRange::<i64>::from_sql(&Type::INT8_RANGE, &bytes).expect("from_sql"),
            upper_only
        );
        let all = SqlRange::<i64>(PgRange {
            lower: None,
            upper: None,
        });
        assert_eq!(encode(&all, &Type::INT8_RANGE), [0x18]);
        // `empty` reads as no bounds, as Spin reads it.
        assert_eq!(
            SqlRange::<i64>::from_sql(&Type::INT8_RANGE, &[0x01]).expect("empty"),
            all
        );
    }

    #[test]
    fn malformed_ranges_are_errors() {
        for bad in [
            &[][..],
            &[0x02, 0, 0, 0][..],
            &[0x02, 0, 0, 0, 4, 0, 0][..],
            &[0x02, 0xff, 0xff, 0xff, 0xff][..],
            &[0x18, 0][..],
        ] {
            assert!(
                SqlRange::<i32>::from_sql(&Type::INT4_RANGE, bad).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn numrange_carries_decimals() {
        let range = SqlRange(PgRange {
            lower: Some((rust_decimal::Decimal::new(15, 1), BoundKind::Exclusive)),
            upper: None,
        });
        let bytes = encode(&range, &Type::NUM_RANGE);
        assert_eq!(bytes[0], 0x10);
        let back = SqlRange::<rust_decimal::Decimal>::from_sql(&Type::NUM_RANGE, &bytes)
            .expect("from_sql");
        assert_eq!(back, range);
        let text = back.0.map(|d| d.to_string());
        assert_eq!(text.lower, Some(("1.5".to_string(), BoundKind::Exclusive)));
    }
}

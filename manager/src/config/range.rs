//! Values of a sweep dimension as written in the config: a list, or `{min, max, step}`.
//!
//! The deserializers are written by hand (not `#[serde(untagged)]`): an untagged enum buffers the
//! value and, when no variant fits, says only "data did not match any variant", losing the key
//! path (`sweep.rate`) and the line. Here a list or a mapping is read in place, so serde_yaml
//! keeps both, and anything else is refused with the accepted forms.
//!
//! A range's length is computed arithmetically ([`NumberRange::len`]); its values are only
//! materialised ([`NumberRange::values`]) when they are few enough, so a range of 10^12 values
//! costs nothing until the sweep's bound refuses it.

use std::fmt;

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::fmt_num;

/// Most values a range is ever expanded into (the sweep's case limit: every dimension has at least
/// one value, so no dimension of an accepted sweep has more).
pub const MAX_VALUES: u128 = super::typed::MAX_CASES;

/// A list of numbers, written either as a YAML list or as `{min, max, step}` (max inclusive).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum NumberRange {
    /// An explicit list.
    List(Vec<f64>),
    /// `min`, `min+step`, ... up to and including `max`.
    Range {
        /// First value.
        min: f64,
        /// Last value (inclusive, when reached by the step).
        max: f64,
        /// Increment, > 0.
        step: f64,
    },
}

/// `{min, max, step}` as a mapping (unknown keys are errors).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeFields {
    min: f64,
    max: f64,
    step: f64,
}

impl NumberRange {
    /// How many values there are, computed without producing them. A range whose step is not
    /// positive, or whose max is below its min, is an error saying so.
    pub fn len(&self) -> Result<u128, String> {
        match self {
            NumberRange::List(v) => Ok(v.len() as u128),
            NumberRange::Range { min, max, step } => range_len(*min, *max, *step),
        }
    }

    /// Whether there are no values (an empty list).
    pub fn is_empty(&self) -> bool {
        matches!(self, NumberRange::List(v) if v.is_empty())
    }

    /// The values, in order. `None` when the range is invalid (see [`NumberRange::len`]) or has
    /// more than [`MAX_VALUES`] values: a range is never expanded past the sweep's limit.
    pub fn values(&self) -> Option<Vec<f64>> {
        match self {
            NumberRange::List(v) => Some(v.clone()),
            NumberRange::Range { min, step, .. } => {
                let n = self.len().ok().filter(|n| *n <= MAX_VALUES)?;
                Some((0..n as u64).map(|i| min + step * i as f64).collect())
            }
        }
    }

    /// The range as written, for messages: `{min: 1, max: 1000000000000, step: 1}` or `[1, 2]`.
    pub fn describe(&self) -> String {
        match self {
            NumberRange::List(v) if v.len() <= 4 => {
                let items: Vec<String> = v.iter().map(|x| fmt_num(*x)).collect();
                format!("[{}]", items.join(", "))
            }
            NumberRange::List(v) => format!("a list of {} values", v.len()),
            NumberRange::Range { min, max, step } => format!(
                "{{min: {}, max: {}, step: {}}}",
                fmt_num(*min),
                fmt_num(*max),
                fmt_num(*step)
            ),
        }
    }
}

/// Values of `min, min+step, ...` up to `max` inclusive (with a little slack for `0.1`-style
/// steps that do not add up exactly). `as u128` saturates, so a range too long to count is
/// reported as `u128::MAX` values rather than wrapping.
fn range_len(min: f64, max: f64, step: f64) -> Result<u128, String> {
    if !(min.is_finite() && max.is_finite() && step.is_finite()) {
        return Err("min, max and step must be finite numbers".into());
    }
    if step <= 0.0 {
        return Err(format!("step {} must be > 0", fmt_num(step)));
    }
    if max < min {
        return Err(format!(
            "max {} is below min {}",
            fmt_num(max),
            fmt_num(min)
        ));
    }
    let steps = ((max - min) / step + 1e-9).floor();
    Ok((steps as u128).saturating_add(1))
}

impl<'de> Deserialize<'de> for NumberRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NumberRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of numbers or {min, max, step}")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = s.next_element::<f64>()? {
                    v.push(x);
                }
                Ok(NumberRange::List(v))
            }
            fn visit_map<M: MapAccess<'de>>(self, m: M) -> Result<Self::Value, M::Error> {
                let r = RangeFields::deserialize(de::value::MapAccessDeserializer::new(m))?;
                Ok(NumberRange::Range {
                    min: r.min,
                    max: r.max,
                    step: r.step,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Values of a custom dimension.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum CustomValues {
    /// Explicit scalars (numbers or strings).
    List(Vec<serde_yaml::Value>),
    /// `{min, max, step}`.
    Range {
        /// First value.
        min: f64,
        /// Last value (inclusive).
        max: f64,
        /// Increment.
        step: f64,
    },
}

impl CustomValues {
    /// The numbers of a range as a [`NumberRange`]; `None` for a list.
    pub fn as_range(&self) -> Option<NumberRange> {
        match self {
            CustomValues::List(_) => None,
            CustomValues::Range { min, max, step } => Some(NumberRange::Range {
                min: *min,
                max: *max,
                step: *step,
            }),
        }
    }

    /// How many values there are, computed without producing them (see [`NumberRange::len`]).
    pub fn len(&self) -> Result<u128, String> {
        match self {
            CustomValues::List(v) => Ok(v.len() as u128),
            CustomValues::Range { .. } => self.as_range().map_or(Ok(0), |r| r.len()),
        }
    }

    /// Whether there are no values (an empty list).
    pub fn is_empty(&self) -> bool {
        matches!(self, CustomValues::List(v) if v.is_empty())
    }

    /// The values as written, for messages.
    pub fn describe(&self) -> String {
        match self {
            CustomValues::List(v) => format!("a list of {} values", v.len()),
            CustomValues::Range { .. } => self.as_range().map(|r| r.describe()).unwrap_or_default(),
        }
    }
}

/// A scalar of a custom dimension's list: a number, string or boolean (not a list or mapping,
/// which could not be written into a case name or an `AEFM_DIM_*` variable).
struct Scalar(serde_yaml::Value);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number, string or boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.into()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.into()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.into()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for CustomValues {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CustomValues;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of numbers or strings, or {min, max, step}")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                let mut v = Vec::new();
                while let Some(Scalar(x)) = s.next_element::<Scalar>()? {
                    v.push(x);
                }
                Ok(CustomValues::List(v))
            }
            fn visit_map<M: MapAccess<'de>>(self, m: M) -> Result<Self::Value, M::Error> {
                let r = RangeFields::deserialize(de::value::MapAccessDeserializer::new(m))?;
                Ok(CustomValues::Range {
                    min: r.min,
                    max: r.max,
                    step: r.step,
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_expands_inclusive() {
        let r = NumberRange::Range {
            min: 100.0,
            max: 300.0,
            step: 100.0,
        };
        assert_eq!(r.len(), Ok(3));
        assert_eq!(r.values().unwrap(), vec![100.0, 200.0, 300.0]);
        let tenths = NumberRange::Range {
            min: 0.1,
            max: 0.3,
            step: 0.1,
        };
        assert_eq!(tenths.len(), Ok(3));
        for (step, max) in [(0.0, 3.0), (-1.0, 3.0), (f64::NAN, 3.0), (1.0, 0.5)] {
            let bad = NumberRange::Range {
                min: 1.0,
                max,
                step,
            };
            assert!(bad.values().is_none(), "{bad:?}");
            assert!(bad.len().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn huge_ranges_are_counted_not_expanded() {
        let r = NumberRange::Range {
            min: 1.0,
            max: 1e12,
            step: 1.0,
        };
        assert_eq!(r.len(), Ok(1_000_000_000_000));
        assert!(r.values().is_none());
        let r = NumberRange::Range {
            min: 0.0,
            max: f64::MAX,
            step: f64::MIN_POSITIVE,
        };
        assert_eq!(r.len(), Ok(u128::MAX));
        assert!(r.values().is_none());
        assert_eq!(
            NumberRange::Range {
                min: 1.0,
                max: 1e12,
                step: 1.0
            }
            .describe(),
            "{min: 1, max: 1000000000000, step: 1}"
        );
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Doc {
        sweep: Sweep,
    }
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Sweep {
        rate: NumberRange,
        #[serde(default)]
        custom: std::collections::BTreeMap<String, CustomValues>,
    }

    fn err(text: &str) -> String {
        serde_yaml::from_str::<Doc>(text).unwrap_err().to_string()
    }

    #[test]
    fn both_forms_parse() {
        let d: Doc =
            serde_yaml::from_str("sweep:\n  rate: [1, 2.5]\n  custom:\n    a: [x, 1, true]\n    b: {min: 0, max: 1, step: 0.5}\n")
                .unwrap();
        assert_eq!(d.sweep.rate, NumberRange::List(vec![1.0, 2.5]));
        assert_eq!(d.sweep.custom["a"].len(), Ok(3));
        assert_eq!(d.sweep.custom["b"].len(), Ok(3));
        let d: Doc = serde_yaml::from_str("sweep:\n  rate: {min: 1, max: 5, step: 2}\n").unwrap();
        assert_eq!(d.sweep.rate.values().unwrap(), vec![1.0, 3.0, 5.0]);
    }

    #[test]
    fn rate_type_errors_name_the_key_the_line_and_the_forms() {
        let e = err("sweep:\n  rate: lots\n");
        assert!(
            e.starts_with("sweep.rate: invalid type: string \"lots\""),
            "{e}"
        );
        assert!(
            e.contains("expected a list of numbers or {min, max, step}"),
            "{e}"
        );
        assert!(e.contains("line 2"), "{e}");
        let e = err("sweep:\n  rate: [10, many]\n");
        assert!(
            e.starts_with("sweep.rate[1]: invalid type: string \"many\""),
            "{e}"
        );
        assert!(e.contains("line 2"), "{e}");
        let e = err("sweep:\n  rate:\n    min: 1\n    max: 10\n");
        assert!(e.starts_with("sweep.rate: missing field `step`"), "{e}");
        let e = err("sweep:\n  rate:\n    min: 1\n    max: 10\n    stp: 1\n");
        assert!(e.starts_with("sweep.rate: unknown field `stp`"), "{e}");
        assert!(e.contains("expected one of `min`, `max`, `step`"), "{e}");
        let e = err("sweep:\n  rate: {min: 1, max: x, step: 1}\n");
        assert!(
            e.starts_with("sweep.rate.max: invalid type: string \"x\""),
            "{e}"
        );
    }

    #[test]
    fn custom_type_errors_name_the_key_the_line_and_the_forms() {
        let e = err("sweep:\n  rate: [1]\n  custom:\n    size: big\n");
        assert!(
            e.starts_with("sweep.custom.size: invalid type: string \"big\""),
            "{e}"
        );
        assert!(
            e.contains("expected a list of numbers or strings, or {min, max, step}"),
            "{e}"
        );
        assert!(e.contains("line 4"), "{e}");
        let e = err("sweep:\n  rate: [1]\n  custom:\n    size: [a, [b]]\n");
        assert!(
            e.starts_with("sweep.custom.size[1]: invalid type: sequence"),
            "{e}"
        );
        assert!(e.contains("expected a number, string or boolean"), "{e}");
        let e = err("sweep:\n  rate: [1]\n  custom:\n    size: {min: 1, top: 2, step: 1}\n");
        assert!(
            e.starts_with("sweep.custom.size: unknown field `top`"),
            "{e}"
        );
    }
}

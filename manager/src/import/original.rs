//! Reading the original config's values as its Python code did: ranges (`_load_range`), numbers
//! that may be written as strings, and quantities that may be written as numbers.

use serde_yaml::Value;

/// A range as the original's `_load_range` read it: a list as is, `{min, max, step}` as
/// `range(min, max + 1, step)` (max inclusive, integers), `null` as absent. `Err` for any other
/// form (the original raised `ValueError`).
pub(crate) fn range(v: &Value, key: &str) -> Result<Option<Vec<Value>>, (String, String)> {
    match v {
        Value::Null => Ok(None),
        Value::Sequence(s) => Ok(Some(s.clone())),
        Value::Mapping(m) => {
            let field = |f: &str| -> Result<i64, (String, String)> {
                super::get(m, f).and_then(Value::as_i64).ok_or_else(|| {
                    (
                        format!("{key}.{f}"),
                        "a {min, max, step} range needs all three as integers".into(),
                    )
                })
            };
            let (min, max, step) = (field("min")?, field("max")?, field("step")?);
            if step <= 0 {
                return Err((format!("{key}.step"), format!("{step} must be > 0")));
            }
            // Bounded like our sweep: a typo must not allocate without limit.
            let len = if max < min { 0 } else { (max - min) / step + 1 };
            if len > crate::config::MAX_CASES as i64 {
                return Err((
                    key.into(),
                    format!("{len} values, more than {}", crate::config::MAX_CASES),
                ));
            }
            Ok(Some(
                (0..len).map(|i| Value::from(min + i * step)).collect(),
            ))
        }
        other => Err((
            key.into(),
            format!(
                "{} is not a range: a list or {{min, max, step}}",
                scalar_text(other)
            ),
        )),
    }
}

/// A number, also when written as a string (`"20"`).
pub(crate) fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A scalar as text (`0.1`, `200Mi`, `true`); `None` for lists, maps and null.
pub(crate) fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Any value as short text for messages.
pub(crate) fn scalar_text(v: &Value) -> String {
    text(v).unwrap_or_else(|| {
        serde_yaml::to_string(v)
            .unwrap_or_default()
            .trim()
            .replace('\n', " ")
    })
}

/// A number as YAML: an integer when it is one (`20`, not `20.0`).
pub(crate) fn num_value(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        Value::from(x as i64)
    } else {
        Value::from(x)
    }
}

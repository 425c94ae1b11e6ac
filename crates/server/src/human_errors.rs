//! Input errors a user can act on. Serde and the standard parsers speak Rust types
//! (`invalid value: integer `-1`, expected usize`, `invalid digit found in string`); users need
//! the value and its limit (`is -1; must be ≥ 0`), the way the engine's range errors read. The
//! JSON API and query strings (`api/body.rs`), the config file (`config.rs`) and the command
//! line (clap value parsers here) all go through this one file.

use std::borrow::Cow;
use std::fmt::Display;
use std::str::FromStr;

/// The largest value of an unsigned integer type serde names, if it is one.
fn unsigned_max(ty: &str) -> Option<u64> {
    Some(match ty {
        "u8" => u8::MAX as u64,
        "u16" => u16::MAX as u64,
        "u32" => u32::MAX as u64,
        "u64" | "usize" => u64::MAX,
        _ => return None,
    })
}

fn is_signed(ty: &str) -> bool {
    matches!(ty, "i8" | "i16" | "i32" | "i64" | "isize")
}

/// What a number of type `ty` must be, in words.
fn must_be(ty: &str) -> Option<String> {
    if let Some(max) = unsigned_max(ty) {
        return Some(if max == u64::MAX {
            "must be a whole number ≥ 0".to_string()
        } else {
            format!("must be a whole number between 0 and {max}")
        });
    }
    if is_signed(ty) {
        return Some("must be a whole number".into());
    }
    matches!(ty, "f32" | "f64").then(|| "must be a number".into())
}

/// Rewrite serde's wording of a number that does not fit its field (`invalid value: integer
/// `-1`, expected usize`) into `is -1; must be ≥ 0`. Anything else is returned unchanged.
pub fn humanize_serde(msg: &str) -> Cow<'_, str> {
    let rewrite = |prefix: &str, quote: char| -> Option<String> {
        let at = msg.find(prefix)?;
        let rest = &msg[at + prefix.len()..];
        let (value, rest) = match quote {
            '`' => {
                let v = rest.strip_prefix('`')?;
                let end = v.find('`')?;
                (v[..end].to_string(), &v[end + 1..])
            }
            _ => {
                let v = rest.strip_prefix('"')?;
                let end = v.find('"')?;
                (format!("the text {:?}", &v[..end]), &v[end + 1..])
            }
        };
        let rest = rest.strip_prefix(", expected ")?;
        let ty_end = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        let ty = &rest[..ty_end];
        let what = if prefix.contains("integer") && value.starts_with('-') {
            if unsigned_max(ty).is_some() {
                "must be ≥ 0".to_string()
            } else {
                must_be(ty)?
            }
        } else if prefix.contains("integer") {
            match unsigned_max(ty) {
                Some(max) => format!("must be ≤ {max}"),
                None => must_be(ty)?,
            }
        } else {
            must_be(ty)?
        };
        Some(format!(
            "{}is {value}; {what}{}",
            &msg[..at],
            &rest[ty_end..]
        ))
    };
    for (prefix, quote) in [
        ("invalid value: integer ", '`'),
        ("invalid type: integer ", '`'),
        ("invalid type: floating point ", '`'),
        ("invalid type: string ", '"'),
    ] {
        if let Some(s) = rewrite(prefix, quote) {
            return Cow::Owned(s);
        }
    }
    Cow::Borrowed(msg)
}

/// The value a query-string error is about, when the message names the field (`limit: invalid
/// digit found in string`): `limit: is -1; must be a whole number ≥ 0`.
pub fn humanize_query(msg: &str, query: Option<&str>) -> String {
    let Some((field, why)) = msg.rsplit_once(": ") else {
        return msg.to_string();
    };
    let field = field.rsplit(": ").next().unwrap_or(field);
    let numeric = why.contains("invalid digit")
        || why.contains("number too large")
        || why.contains("cannot parse integer")
        || why.contains("invalid float");
    if !numeric {
        return msg.to_string();
    }
    let value = query.and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == field)
            .map(|(_, v)| v.into_owned())
    });
    match value {
        Some(v) if v.trim_start().starts_with('-') => format!("{field}: is {v}; must be ≥ 0"),
        Some(v) if why.contains("too large") => format!("{field}: is {v}; it is too large"),
        Some(v) => format!("{field}: is {v:?}; must be a whole number ≥ 0"),
        None => format!("{field}: must be a whole number ≥ 0"),
    }
}

/// A clap value parser for whole numbers ≥ 0: `--delay=-1` says `is -1; must be ≥ 0`.
pub fn whole<T>(s: &str) -> Result<T, String>
where
    T: FromStr,
    T::Err: Display,
{
    s.trim().parse::<T>().map_err(|e| {
        let e = e.to_string();
        if s.trim_start().starts_with('-') {
            format!("is {s}; must be ≥ 0")
        } else if e.contains("too large") {
            format!("is {s}; that is too large")
        } else {
            format!("is {s:?}; must be a whole number ≥ 0")
        }
    })
}

/// A clap value parser for numbers ≥ 0, fractions allowed (seconds, rates).
pub fn non_negative(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err(format!("is {s}; must be ≥ 0")),
        Err(_) => Err(format!("is {s:?}; must be a number ≥ 0")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_numbers_read_as_limits() {
        assert_eq!(
            humanize_serde("invalid value: integer `-1`, expected usize at line 1 column 18"),
            "is -1; must be ≥ 0 at line 1 column 18"
        );
        assert_eq!(
            humanize_serde("invalid value: integer `4294967296`, expected u32"),
            "is 4294967296; must be ≤ 4294967295"
        );
        assert_eq!(
            humanize_serde("invalid type: floating point `1.5`, expected u32"),
            "is 1.5; must be a whole number between 0 and 4294967295"
        );
        assert_eq!(
            humanize_serde("invalid type: string \"5\", expected u32 at line 1 column 34"),
            "is the text \"5\"; must be a whole number between 0 and 4294967295 at line 1 column 34"
        );
        assert_eq!(
            humanize_serde("unknown field `x`, expected one of `a`"),
            "unknown field `x`, expected one of `a`"
        );
        assert_eq!(
            humanize_serde("invalid type: string \"x\", expected a boolean"),
            "invalid type: string \"x\", expected a boolean"
        );
    }

    #[test]
    fn query_numbers_name_the_value() {
        assert_eq!(
            humanize_query(
                "Failed to deserialize query string: limit: invalid digit found in string",
                Some("limit=-1")
            ),
            "limit: is -1; must be ≥ 0"
        );
        assert_eq!(
            humanize_query("limit: invalid digit found in string", Some("limit=abc")),
            "limit: is \"abc\"; must be a whole number ≥ 0"
        );
        assert_eq!(
            humanize_query("status: unknown", Some("status=x")),
            "status: unknown"
        );
    }

    #[test]
    fn flags_read_as_limits() {
        assert_eq!(whole::<u32>("-1").unwrap_err(), "is -1; must be ≥ 0");
        assert_eq!(whole::<u32>("7").unwrap(), 7);
        assert!(whole::<u32>("x").unwrap_err().contains("whole number"));
        assert_eq!(non_negative("-0.5").unwrap_err(), "is -0.5; must be ≥ 0");
        assert_eq!(non_negative("0.5").unwrap(), 0.5);
    }
}

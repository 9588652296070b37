//! Small OTLP helpers: attribute constructors and times as people read them.

use std::cell::Cell;

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, ArrayValue, KeyValue, any_value::Value},
    resource::v1::Resource,
};

#[must_use]
pub fn any_str(s: &str) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(s.to_owned())),
    }
}

#[must_use]
pub fn kv_str(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(any_str(value)),
    }
}

#[must_use]
pub fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::IntValue(value)),
        }),
    }
}

#[must_use]
pub fn kv_bool(key: &str, value: bool) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::BoolValue(value)),
        }),
    }
}

#[must_use]
pub fn kv_strs(key: &str, values: &[String]) -> KeyValue {
    kv_array(key, values.iter().map(String::as_str))
}

/// A string attribute whose value is moved in (no copy of a value built for it).
#[must_use]
pub fn kv_string(key: &str, value: String) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(value)),
        }),
    }
}

/// A string-array attribute of `values`, each copied once.
#[must_use]
pub fn kv_array<'a>(key: &str, values: impl ExactSizeIterator<Item = &'a str>) -> KeyValue {
    kv_strings(key, values.map(str::to_owned))
}

/// A string-array attribute whose values are moved in.
#[must_use]
pub fn kv_strings(key: &str, values: impl ExactSizeIterator<Item = String>) -> KeyValue {
    let mut array = Vec::with_capacity(values.len());
    array.extend(values.map(|s| AnyValue {
        value: Some(Value::StringValue(s)),
    }));
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(Value::ArrayValue(ArrayValue { values: array })),
        }),
    }
}

/// A resource's attributes (none without a resource).
#[must_use]
pub fn resource_attrs(resource: Option<&Resource>) -> &[KeyValue] {
    resource.map_or(&[], |r| r.attributes.as_slice())
}

/// Unix nanoseconds as RFC 3339 UTC with milliseconds (`2026-11-27T04:10:00.123Z`).
#[must_use]
pub fn rfc3339(unix_ns: u64) -> String {
    let mut out = String::with_capacity(24);
    push_rfc3339(&mut out, unix_ns);
    out
}

/// Writes [`rfc3339`] of `unix_ns` at the end of `out`.
pub fn push_rfc3339(out: &mut String, unix_ns: u64) {
    thread_local! {
        /// The last day written and its date (`2026-11-27`): alert chains write a time per
        /// step, nearly all of them on the same day.
        static DAY: Cell<(u64, [u8; 10])> = const { Cell::new((u64::MAX, [0; 10])) };
    }
    let secs = unix_ns / 1_000_000_000;
    let ms = (unix_ns / 1_000_000) % 1000;
    let day = secs / 86_400;
    let rem = secs % 86_400;
    let date = DAY.with(|last| match last.get() {
        (d, date) if d == day => date,
        _ => {
            let date = civil_date(day);
            last.set((day, date));
            date
        }
    });
    let mut text = *b"0000-00-00T00:00:00.000Z";
    text[..10].copy_from_slice(&date);
    digits(&mut text[11..13], rem / 3600);
    digits(&mut text[14..16], (rem / 60) % 60);
    digits(&mut text[17..19], rem % 60);
    digits(&mut text[20..23], ms);
    // ASCII digits and separators only.
    out.push_str(std::str::from_utf8(&text).unwrap_or_default());
}

/// `YYYY-MM-DD` of the day `day` days after 1970-01-01.
fn civil_date(day: u64) -> [u8; 10] {
    let days = i64::try_from(day).unwrap_or(0);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mut date = *b"0000-00-00";
    digits(&mut date[..4], y.unsigned_abs());
    digits(&mut date[5..7], m.unsigned_abs());
    digits(&mut date[8..10], d.unsigned_abs());
    date
}

/// The last `into.len()` decimal digits of `value`, into `into`.
fn digits(into: &mut [u8], mut value: u64) {
    for place in into.iter_mut().rev() {
        *place = b'0' + u8::try_from(value % 10).unwrap_or(0);
        value /= 10;
    }
}

/// Parses RFC 3339 (`2026-11-27T04:10:00.123Z`, `2026-11-27T05:10:00+01:00`) into Unix
/// nanoseconds: the inverse of [`rfc3339`]. `None` when malformed or before 1970.
#[must_use]
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = text.get(from..from + len)?;
        digits
            .bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let sep = |at: usize, ok: &[u8]| bytes.get(at).is_some_and(|c| ok.contains(c));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month) || day < 1 || day > month_days[(month - 1) as usize] {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut at = 19;
    let mut nanos = 0;
    if sep(at, b".") {
        at += 1;
        let digits = bytes[at..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        for (i, c) in bytes[at..at + digits].iter().take(9).enumerate() {
            nanos += i64::from(c - b'0') * 10_i64.pow(8 - i as u32);
        }
        at += digits;
    }
    let offset = match bytes.get(at)? {
        b'Z' | b'z' if at + 1 == bytes.len() => 0,
        sign @ (b'+' | b'-') if at + 6 == bytes.len() && sep(at + 3, b":") => {
            let (oh, om) = (num(at + 1, 2)?, num(at + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(secs)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(u64::try_from(nanos).ok()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339() {
        for (ns, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (1_795_737_600_123_000_000, "2026-11-27T00:00:00.123Z"),
            (951_782_400_000_000_000, "2000-02-29T00:00:00.000Z"),
            // A day written before (its date remembered), then the next.
            (1_795_737_600_000_000_000, "2026-11-27T00:00:00.000Z"),
            (1_795_823_999_999_000_000, "2026-11-27T23:59:59.999Z"),
            (1_795_824_000_001_000_000, "2026-11-28T00:00:00.001Z"),
        ] {
            assert_eq!(super::rfc3339(ns), text, "{ns}");
        }
    }

    #[test]
    fn parse_rfc3339() {
        use super::parse_rfc3339 as parse;
        for ns in [0, 1_795_737_600_123_000_000, 951_782_400_000_000_000] {
            assert_eq!(parse(&super::rfc3339(ns)), Some(ns), "{ns}");
        }
        assert_eq!(
            parse("2026-11-27T01:00:00.5+01:00"),
            Some(1_795_737_600_500_000_000)
        );
        assert_eq!(
            parse("2026-11-26T23:30:00-00:30"),
            Some(1_795_737_600_000_000_000)
        );
        assert_eq!(
            parse("2026-11-27t00:00:00.123456789z"),
            Some(1_795_737_600_123_456_789)
        );
        for bad in [
            "",
            "2026-11-27",
            "2026-11-27T00:00:00",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-27T24:00:00Z",
            "2026-11-27T00:00:00.Z",
            "2026-11-27T00:00:00+0100",
            "2026-11-27T00:00:00Zjunk",
            "+026-11-27T00:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}

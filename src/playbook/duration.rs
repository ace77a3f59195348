//! Durations as PostgreSQL writes them in settings: `500ms`, `30s`, `5min`, `1h`, `1d`.

use std::time::Duration;

/// Parses a duration with a unit; a bare number is refused because
/// `lock_timeout: 500` means milliseconds to PostgreSQL but seconds to many people.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return Err(format!(
            "{text:?} is not a duration: expected a whole number and a unit, e.g. 500ms, 30s, 5min"
        ));
    }
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is too large to be a duration"))?;
    let millis_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => {
            return Err(format!(
                "{text:?} has no unit: write e.g. {text}ms or {text}s (units: ms, s, min, h, d)"
            ))
        }
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}: use ms, s, min, h or d"
            ))
        }
    };
    value
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{text:?} is too large to be a duration"))
}

/// The duration as a PostgreSQL setting value, in milliseconds: `'500ms'`.
pub fn to_setting(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// The duration for people: `500ms`, `30s`, `2min`.
pub fn human(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms == 0 {
        "0ms".to_string()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}min", ms / 60_000)
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_units() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
    }

    #[test]
    fn refuses_ambiguous_or_broken_values() {
        for bad in [
            "500",
            "",
            "ms",
            "5 parsecs",
            "-1s",
            "1.5s",
            "99999999999999999999s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn renders_back() {
        assert_eq!(human(Duration::from_millis(500)), "500ms");
        assert_eq!(human(Duration::from_secs(120)), "2min");
        assert_eq!(to_setting(Duration::from_secs(30)), "30000ms");
    }
}

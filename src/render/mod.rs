//! Text renderings for people. JSON renderings are the serde form of the
//! same structures, so the two never disagree.

pub mod change_record;
pub mod change_request;
pub mod diagram;
pub mod inspect;
pub mod orphans;
pub mod plan;
pub mod psql;

/// Thousands separators for counts people read at a glance: 1,234,567.
pub fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_and_sizes_read_well() {
        assert_eq!(super::count(1234567), "1,234,567");
        assert_eq!(super::count(999), "999");
        assert_eq!(super::bytes(1536), "1.5 kB");
    }
}

//! Wall-clock helpers (no chrono: the stand-in only needs UTC formatting).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, with sub-second precision.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// `2026-11-25 12:00:00 UTC`, the timestamp of the agent's log lines.
pub fn log_timestamp(secs: f64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs.floor() as i64);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// `2026-11-25T12:00:00Z` (RFC 3339, second precision).
pub fn rfc3339(secs: f64) -> String {
    let (y, mo, d, h, mi, s) = civil(secs.floor() as i64);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Go's `time.Time.String()` of a UTC RFC 3339 time, as workload-list prints a process's creation
/// time: `2026-11-25T12:00:00.5Z` -> `2026-11-25 12:00:00.5 +0000 UTC`.
pub fn go_time_string(rfc3339: &str) -> String {
    match rfc3339.strip_suffix('Z') {
        Some(utc) => format!("{} +0000 UTC", utc.replacen('T', " ", 1)),
        None => rfc3339.to_owned(),
    }
}

/// Splits Unix seconds into (year, month, day, hour, minute, second), UTC.
fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 -> proleptic Gregorian date.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(log_timestamp(0.0), "1970-01-01 00:00:00 UTC");
        // 2026-11-25 12:00:00 UTC
        assert_eq!(log_timestamp(1_795_608_000.7), "2026-11-25 12:00:00 UTC");
        assert_eq!(rfc3339(951_825_599.0), "2000-02-29T11:59:59Z");
        assert_eq!(rfc3339(-1.0), "1969-12-31T23:59:59Z");
    }
}

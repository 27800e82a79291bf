//! Timestamps: stored as Unix milliseconds, shown as ISO-8601 UTC with milliseconds, as Keygen does.

use chrono::{DateTime, SecondsFormat, Utc};

pub type Millis = i64;

pub fn now_ms() -> Millis {
    Utc::now().timestamp_millis()
}

pub fn iso(ms: Millis) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default().to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn iso_opt(ms: Option<Millis>) -> Option<String> {
    ms.map(iso)
}

/// Parses an ISO-8601 / RFC 3339 timestamp (a bare date means midnight UTC).
pub fn parse_iso(s: &str) -> Option<Millis> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis());
    }
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|t| t.and_utc().timestamp_millis())
}

pub const SECOND: Millis = 1000;
pub const DAY: Millis = 86_400 * SECOND;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trips_with_millis() {
        let t = parse_iso("2022-10-16T14:52:48.123Z").unwrap();
        assert_eq!(iso(t), "2022-10-16T14:52:48.123Z");
        assert_eq!(iso(parse_iso("2030-01-02").unwrap()), "2030-01-02T00:00:00.000Z");
        assert_eq!(parse_iso("2022-10-16T16:52:48+02:00"), parse_iso("2022-10-16T14:52:48Z"));
        assert!(parse_iso("next tuesday").is_none());
    }
}

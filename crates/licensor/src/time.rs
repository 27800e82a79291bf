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

/// The lengths Keygen (Rails) gives the calendar units when it splits a number of seconds into
/// them: a year is 365.2425 days, a month a twelfth of that.
const YEAR_SECS: i64 = 31_556_952;
const MONTH_SECS: i64 = 2_629_746;
const WEEK_SECS: i64 = 604_800;
const DAY_SECS: i64 = 86_400;

/// The last instant a timestamp may take: 9999-12-31T23:59:59.999Z, the end of ISO 8601's
/// four-digit years (what the API accepts and every client parses).
pub const MAX_MS: Millis = 253_402_300_799_999;

/// `at` plus a policy duration (or check-out TTL) of `seconds`, added as Keygen adds one: the
/// seconds are split greedily into years, months, weeks, days and a rest, and the years and
/// months are then added on the calendar (the day clamped to the month's end). So 2,629,746 s
/// from 19 July is 19 August at the same time, and a year is the same date a year on. `None`
/// past [`MAX_MS`].
pub fn add_duration(at: Millis, seconds: i64) -> Option<Millis> {
    let sign = seconds.signum();
    let mut rest = seconds.abs();
    let years = rest / YEAR_SECS;
    rest %= YEAR_SECS;
    let months = rest / MONTH_SECS;
    rest %= MONTH_SECS;
    let days = rest / WEEK_SECS * 7 + rest % WEEK_SECS / DAY_SECS;
    rest %= DAY_SECS;
    // Applied in that order, one unit at a time, as Rails does (clamping can differ otherwise).
    let t = add_months(at, sign * 12 * years)?;
    let t = add_months(t, sign * months)?;
    t.checked_add(sign * (days * DAY + rest * SECOND)).filter(|t| *t <= MAX_MS)
}

/// `at` moved by whole calendar months, the day clamped to the last day of the target month.
/// `None` past [`MAX_MS`].
pub fn add_months(at: Millis, months: i64) -> Option<Millis> {
    let t = DateTime::<Utc>::from_timestamp_millis(at)?;
    let n = chrono::Months::new(u32::try_from(months.unsigned_abs()).ok()?);
    let moved = if months >= 0 { t.checked_add_months(n) } else { t.checked_sub_months(n) };
    moved.map(|t| t.timestamp_millis()).filter(|t| *t <= MAX_MS)
}

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

    fn at(s: &str) -> Millis {
        parse_iso(s).unwrap()
    }

    #[test]
    fn durations_are_added_on_the_calendar() {
        // Keygen's "renews a license (from expiry renewal basis)": one month from 19 July.
        assert_eq!(iso(add_duration(at("2021-07-19T00:00:00Z"), MONTH_SECS).unwrap()), "2021-08-19T00:00:00.000Z");
        assert_eq!(iso(add_duration(at("2024-02-29T12:00:00.250Z"), YEAR_SECS).unwrap()), "2025-02-28T12:00:00.250Z");
        assert_eq!(iso(add_duration(at("2021-01-31T00:00:00Z"), MONTH_SECS).unwrap()), "2021-02-28T00:00:00.000Z");
        // Shorter than a month: plain days and seconds.
        assert_eq!(iso(add_duration(at("2021-01-31T00:00:00Z"), 30 * DAY_SECS).unwrap()), "2021-03-02T00:00:00.000Z");
        assert_eq!(iso(add_duration(at("2021-01-01T00:00:00Z"), 90).unwrap()), "2021-01-01T00:01:30.000Z");
        // 365 days is 11 months, 4 weeks, 2 days and 16,794 s (4 h 39 min 54 s) to Rails.
        assert_eq!(iso(add_duration(at("2021-01-01T00:00:00Z"), 365 * DAY_SECS).unwrap()), "2021-12-31T04:39:54.000Z");
        // Years, then months, each clamped in turn: 29 Feb + 1 year 1 month is 28 March.
        assert_eq!(
            iso(add_duration(at("2024-02-29T00:00:00Z"), YEAR_SECS + MONTH_SECS).unwrap()),
            "2025-03-28T00:00:00.000Z"
        );
        assert_eq!(iso(add_months(at("2021-03-31T00:00:00Z"), -1).unwrap()), "2021-02-28T00:00:00.000Z");
        // Nothing past the year 9999.
        assert_eq!(add_duration(at("9999-12-01T00:00:00Z"), MONTH_SECS), None);
        assert_eq!(add_duration(MAX_MS, 1), None);
        assert_eq!(iso(MAX_MS), "9999-12-31T23:59:59.999Z");
    }
}

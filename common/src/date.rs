//! Calendar dates of timestamps (proleptic Gregorian, UTC): the one place
//! the project turns milliseconds since the Unix epoch into a date and
//! back, refusing dates that do not exist (2026-02-31 is not 3 March).
//! The day/date conversions are Howard Hinnant's algorithms.

/// The civil date (year, month, day) of a day counted from the Unix epoch.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// How many days `month` of `year` has (None: no such month).
pub fn days_in_month(year: i64, month: u32) -> Option<u32> {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    Some(match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        _ => return None,
    })
}

/// The day, counted from the Unix epoch, of a civil date; None if the date
/// does not exist.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> Option<i64> {
    if day == 0 || day > days_in_month(year, month)? {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(month) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// A timestamp's date and time of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub milli: u32,
    /// 0 = Monday .. 6 = Sunday.
    pub weekday: u32,
}

/// The date and time of day of `ms` milliseconds since the epoch.
pub fn parts(ms: u64) -> Parts {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let rem = (secs % 86_400) as u32;
    Parts {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
        milli: (ms % 1000) as u32,
        // 1970-01-01 was a Thursday.
        weekday: ((days + 3) % 7) as u32,
    }
}

/// Seconds since the epoch of a UTC date and time; None if it does not
/// exist or is before 1970 (a leap second, :60, is taken as the next one).
pub fn unix_secs(year: i64, month: u32, day: u32, hour: u32, min: u32, sec: u32) -> Option<u64> {
    if hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let days = u64::try_from(days_from_civil(year, month, day)?).ok()?;
    Some(days * 86_400 + u64::from(hour) * 3600 + u64::from(min) * 60 + u64::from(sec))
}

/// `2026-11-25T15:45:05.000Z`, as S3 listings show dates.
pub fn iso8601(ms: u64) -> String {
    let p = parts(ms);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        p.year, p.month, p.day, p.hour, p.minute, p.second, p.milli
    )
}

/// `20261125T154505Z`, as SigV4 writes request times.
pub fn amz_date(secs: u64) -> String {
    let p = parts(secs * 1000);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        p.year, p.month, p.day, p.hour, p.minute, p.second
    )
}

/// `YYYY-MM-DD` or `YYYY-MM-DDThh:mm:ss[.fff]Z` to milliseconds since the
/// epoch; None if malformed or the date does not exist.
pub fn parse_iso8601(s: &str) -> Option<u64> {
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let t = s.get(r)?;
        t.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if s.get(4..5)? != "-" || s.get(7..8)? != "-" {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (mut h, mut mi, mut sec, mut milli) = (0u32, 0u32, 0u32, 0u32);
    if s.len() > 10 {
        let rest = s.get(10..)?;
        let ok = rest.len() >= 10
            && rest.starts_with('T')
            && &rest[3..4] == ":"
            && &rest[6..7] == ":"
            && rest.ends_with('Z');
        if !ok {
            return None;
        }
        (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
        let frac = s.get(19..s.len() - 1)?;
        if !frac.is_empty() {
            let digits = frac.strip_prefix('.')?;
            if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            milli = format!("{digits:0<3}")[..3].parse().ok()?;
        }
    }
    let secs = unix_secs(i64::from(y), mo, d, h, mi, sec)?;
    Some(secs * 1000 + u64::from(milli))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_days_agree_both_ways() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_788), (2026, 12, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        for days in -800_000..800_000i64 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), Some(days), "{y}-{m}-{d}");
        }
    }

    #[test]
    fn dates_that_do_not_exist_are_refused() {
        assert_eq!(days_from_civil(2026, 2, 31), None);
        assert_eq!(days_from_civil(2026, 2, 29), None);
        assert_eq!(days_from_civil(2024, 2, 29), Some(19_782));
        assert_eq!(days_from_civil(1900, 2, 29), None);
        assert_eq!(days_from_civil(2000, 2, 29), Some(11_016));
        assert_eq!(days_from_civil(2026, 4, 31), None);
        assert_eq!(days_from_civil(2026, 13, 1), None);
        assert_eq!(days_from_civil(2026, 0, 1), None);
        assert_eq!(days_from_civil(2026, 1, 0), None);
        assert_eq!(parse_iso8601("2026-02-31"), None);
        assert_eq!(parse_iso8601("2026-02-31T00:00:00Z"), None);
        assert_eq!(parse_iso8601("2026-12-01T24:00:00Z"), None);
        assert_eq!(parse_iso8601("2026-12-01T00:60:00Z"), None);
        assert_eq!(parse_iso8601("2026-12-1"), None);
        assert_eq!(parse_iso8601("2026/12/01"), None);
        assert_eq!(parse_iso8601("2026-12-01T00:00:00"), None);
        assert_eq!(parse_iso8601("2026-12-01T00:00:00.Z"), None);
        assert_eq!(parse_iso8601("+026-12-01"), None);
        assert_eq!(parse_iso8601("1969-12-31"), None, "before the epoch");
        assert_eq!(unix_secs(2026, 2, 30, 0, 0, 0), None);
    }

    #[test]
    fn timestamps_are_written_and_read_back() {
        let ms = 1_764_690_305_123; // 2025-12-02T15:45:05.123Z, a Tuesday
        assert_eq!(iso8601(ms), "2025-12-02T15:45:05.123Z");
        assert_eq!(parse_iso8601(&iso8601(ms)), Some(ms));
        assert_eq!(parse_iso8601("2025-12-02"), Some(ms - ms % 86_400_000));
        assert_eq!(
            parse_iso8601("2025-12-02T15:45:05Z"),
            Some(ms - 123),
            "no fraction"
        );
        assert_eq!(parse_iso8601("2025-12-02T15:45:05.1Z"), Some(ms - 23));
        assert_eq!(amz_date(ms / 1000), "20251202T154505Z");
        assert_eq!(parts(ms).weekday, 1);
        assert_eq!(parts(0).weekday, 3, "a Thursday");
    }
}

//! Times and sizes as docker prints them ("2 weeks ago", "187MB").

use std::time::{SystemTime, UNIX_EPOCH};

/// docker's `units.HumanSize`: decimal units, three significant digits.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit + 1 < UNITS.len() {
        size /= 1000.0;
        unit += 1;
    }
    let text = format!("{size:.3}");
    // Three significant digits: 1.23, 12.3, 123.
    let digits_before = text.split('.').next().map_or(1, str::len);
    let precision = 3usize.saturating_sub(digits_before);
    let shown = format!("{size:.precision$}");
    let shown = if shown.contains('.') {
        shown
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        shown
    };
    format!("{shown}{}", UNITS[unit])
}

/// "3 weeks ago" for an RFC 3339 time; the text itself when it can't be read.
pub fn since(rfc3339: &str) -> String {
    let Some(then) = parse_rfc3339(rfc3339) else {
        return rfc3339.to_string();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    format!("{} ago", human_duration((now - then).max(0) as u64))
}

/// docker's `units.HumanDuration`.
pub fn human_duration(secs: u64) -> String {
    let plural = |n: u64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    let hours = secs / 3600;
    match secs {
        0 => "Less than a second".into(),
        s if s < 60 => plural(s, "second"),
        s if s / 60 == 1 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        _ => format!("{} years", hours / 24 / 365),
    }
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let end = frac
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(frac.len());
        rest = &frac[end..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (o.get(1..3)?.parse::<i64>().ok()? * 3600
                + o.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    // Howard Hinnant's days_from_civil.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (mo + if mo > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    Some(days * 86400 + h * 3600 + mi * 60 + sec - offset)
}

/// `90s`, `30m`, `24h`, `7d` (or plain seconds) as seconds.
pub fn parse_age(text: &str) -> Result<u64, String> {
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit())
        .map_or((text, ""), |at| text.split_at(at));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 90s, 30m, 24h or 7d"))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("unknown unit {unit:?}: one of s, m, h, d")),
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("{text:?} is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_docker() {
        for (n, text) in [
            (0, "0B"),
            (999, "999B"),
            (1000, "1kB"),
            (1234, "1.23kB"),
            (187_000_000, "187MB"),
            (77_800_000, "77.8MB"),
            (5_000_000_000, "5GB"),
        ] {
            assert_eq!(human_size(n), text, "{n}");
        }
    }

    #[test]
    fn durations_like_docker() {
        for (s, text) in [
            (0, "Less than a second"),
            (1, "1 second"),
            (30, "30 seconds"),
            (90, "About a minute"),
            (600, "10 minutes"),
            (3600, "About an hour"),
            (5 * 3600, "5 hours"),
            (3 * 86400, "3 days"),
            (21 * 86400, "3 weeks"),
            (90 * 86400, "3 months"),
            (800 * 86400, "2 years"),
        ] {
            assert_eq!(human_duration(s), text, "{s}");
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00.123456789Z"),
            Some(1_709_208_000)
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T14:00:00+02:00"),
            Some(1_709_208_000)
        );
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}

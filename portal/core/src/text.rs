//! Numbers and times as the pages print them.
//!
//! These run in the browser too, where every formatting routine ships in the
//! wasm bundle: Rust's float formatting and chrono's `strftime` engine are
//! each tens of kilobytes, and the pages only ever need fixed decimals and
//! one timestamp layout. Integer formatting is already there, so these build
//! on it.

use chrono::{DateTime, Datelike, Timelike, Utc};

/// `value` rounded to `decimals` places (half away from zero), like
/// `format!("{value:.decimals$}")` for the magnitudes the portal shows
/// (below 10^15 after scaling); non-finite values read `n/a`.
pub fn fixed(value: f64, decimals: u8) -> String {
    if !value.is_finite() {
        return "n/a".to_owned();
    }
    let scale = 10u64.pow(u32::from(decimals));
    let scaled = (value.abs() * scale as f64).round() as u64;
    let sign = if value < 0.0 && scaled != 0 { "-" } else { "" };
    let (whole, part) = (scaled / scale, scaled % scale);
    if decimals == 0 {
        format!("{sign}{whole}")
    } else {
        format!(
            "{sign}{whole}.{part:0width$}",
            width = usize::from(decimals)
        )
    }
}

/// A threshold or quantity as a person writes it: `70`, `62.5`, `0.02`
/// (up to four decimals, trailing zeros dropped).
pub fn plain(value: f64) -> String {
    let text = fixed(value, 4);
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        text
    }
}

/// `2026-11-30 14:05 UTC`, or with seconds `2026-11-30 14:05:09 UTC`.
pub fn utc(at: DateTime<Utc>, seconds: bool) -> String {
    let date = format!("{:04}-{:02}-{:02}", at.year(), at.month(), at.day());
    if seconds {
        format!("{date} {} UTC", clock(at))
    } else {
        format!("{date} {:02}:{:02} UTC", at.hour(), at.minute())
    }
}

/// `14:05:09`.
pub fn clock(at: DateTime<Utc>) -> String {
    format!("{:02}:{:02}:{:02}", at.hour(), at.minute(), at.second())
}

/// The machine-readable form for `<time datetime=…>`: `2026-11-30T14:05:09Z`.
pub fn iso(at: DateTime<Utc>) -> String {
    format!(
        "{:04}-{:02}-{:02}T{}Z",
        at.year(),
        at.month(),
        at.day(),
        clock(at)
    )
}

/// A span of minutes as people write it: "4 h", "90 min" → "1 h 30 min".
pub fn minutes(minutes: u32) -> String {
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn fixed_matches_the_standard_formatting_where_rounding_is_unambiguous() {
        for (value, decimals, expected) in [
            (0.0, 2, "0.00"),
            (1.5, 0, "2"),
            (0.125, 1, "0.1"),
            (12.345678, 4, "12.3457"),
            (-3.456, 2, "-3.46"),
            (-0.001, 2, "0.00"),
            (1234.5, 1, "1234.5"),
            (0.169, 2, "0.17"),
            (999.999, 2, "1000.00"),
        ] {
            assert_eq!(fixed(value, decimals), expected, "{value} to {decimals}");
        }
        assert_eq!(fixed(f64::NAN, 2), "n/a");
        assert_eq!(fixed(f64::INFINITY, 1), "n/a");
    }

    #[test]
    fn fixed_agrees_with_format_on_a_sweep() {
        // Skip exact halves at the last digit: the float's binary value
        // decides those, and the pages never depend on them.
        for i in 0..20_000u32 {
            let value = f64::from(i) * 0.0137 - 50.0;
            for decimals in 0..=4u8 {
                let ours = fixed(value, decimals);
                let std = format!("{value:.prec$}", prec = usize::from(decimals));
                let std =
                    if std.starts_with("-") && std.trim_start_matches(['-', '0', '.']).is_empty() {
                        std[1..].to_string()
                    } else {
                        std
                    };
                let half = (value.abs() * 10f64.powi(i32::from(decimals))).fract();
                if (half - 0.5).abs() > 1e-6 {
                    assert_eq!(ours, std, "{value} to {decimals}");
                }
            }
        }
    }

    #[test]
    fn plain_drops_trailing_zeros() {
        for (value, expected) in [
            (70.0, "70"),
            (62.5, "62.5"),
            (0.02, "0.02"),
            (-1.25, "-1.25"),
            (0.0, "0"),
        ] {
            assert_eq!(plain(value), expected);
            assert_eq!(plain(value), value.to_string());
        }
    }

    #[test]
    fn timestamps_read_like_chrono_would_print_them() {
        let at = Utc.with_ymd_and_hms(2026, 3, 7, 4, 5, 9).unwrap();
        assert_eq!(
            utc(at, true),
            at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        );
        assert_eq!(utc(at, false), at.format("%Y-%m-%d %H:%M UTC").to_string());
        assert_eq!(clock(at), at.format("%H:%M:%S").to_string());
        assert_eq!(
            iso(at),
            at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
}

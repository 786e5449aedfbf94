//! License-file dates: `31-dec-2026`, Citrix's `2026.1231`, and the spellings
//! of "never expires" (`permanent`, `0`, year 0 as in `1-jan-0`).
//!
//! Month names are case-insensitive and the day may have one or two digits.
//! Years have four digits, except year 0 (`0`, `00`, `0000`), which FlexLM
//! uses to mean "permanent" and which only an expiry date may use.

use super::model::{Date, Expiry};

/// Three-letter month names, January first.
const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];

/// Full English month names, January first, for messages.
const MONTH_DISPLAY: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Why a date did not parse. The `Display` text completes a sentence such as
/// `bad expiry date "31-feb-2026" (...)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DateError {
    /// Not shaped like any date spelling.
    #[error("expected a date like 31-dec-2026 or 2026.1231")]
    Shape,
    /// The month name or number is not a month.
    #[error("{0:?} is not a month")]
    Month(String),
    /// The day does not exist in that month.
    #[error("day {day} does not exist in {month}")]
    Day {
        /// The day as written.
        day: u32,
        /// The month's English name (with the year for 29 February).
        month: String,
    },
    /// Year 0 means "permanent", which this field does not allow.
    #[error("year 0 (permanent) is not allowed here")]
    YearZero,
}

/// Parses an expiry: `permanent`, `0`, a year-0 date, or a real date.
pub(crate) fn parse_expiry(text: &str) -> Result<Expiry, DateError> {
    if text.eq_ignore_ascii_case("permanent") || text == "0" {
        return Ok(Expiry::Permanent);
    }
    match parse_date(text) {
        Ok(date) => Ok(Expiry::On(date)),
        Err(DateError::YearZero) => Ok(Expiry::Permanent),
        Err(e) => Err(e),
    }
}

/// Parses a calendar date (`ISSUED=`, `START=`). Year 0 is an error here.
pub(crate) fn parse_date(text: &str) -> Result<Date, DateError> {
    let (year, month, day) = if let Some((ymd_year, mmdd)) = text.split_once('.') {
        split_citrix(ymd_year, mmdd)?
    } else {
        split_dashed(text)?
    };
    if !(1..=12).contains(&month) {
        return Err(DateError::Month(month.to_string()));
    }
    if year == 0 {
        return Err(DateError::YearZero);
    }
    let last = days_in_month(year, month);
    if day == 0 || day > last {
        let mut name = MONTH_DISPLAY[month as usize - 1].to_string();
        if month == 2 && day == 29 {
            name = format!("February {year}");
        }
        return Err(DateError::Day { day, month: name });
    }
    // The range checks above keep these conversions lossless.
    Ok(Date {
        year: year as u16,
        month: month as u8,
        day: day as u8,
    })
}

/// `yyyy.mmdd` → (year, month, day), shape only.
fn split_citrix(year: &str, mmdd: &str) -> Result<(u32, u32, u32), DateError> {
    if year.len() != 4 || mmdd.len() != 4 || !all_digits(year) || !all_digits(mmdd) {
        return Err(DateError::Shape);
    }
    let (mm, dd) = mmdd.split_at(2);
    Ok((number(year)?, number(mm)?, number(dd)?))
}

/// `d-mon-yyyy` → (year, month, day), shape only.
fn split_dashed(text: &str) -> Result<(u32, u32, u32), DateError> {
    let mut parts = text.split('-');
    let (Some(day), Some(month), Some(year), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DateError::Shape);
    };
    if day.is_empty() || day.len() > 2 || !all_digits(day) || !all_digits(year) {
        return Err(DateError::Shape);
    }
    let year_value = match year.len() {
        4 => number(year)?,
        1..=3 if year.bytes().all(|b| b == b'0') => 0,
        _ => return Err(DateError::Shape),
    };
    let month_index = MONTH_NAMES
        .iter()
        .position(|m| m.eq_ignore_ascii_case(month))
        .ok_or_else(|| DateError::Month(month.to_string()))?;
    Ok((year_value, month_index as u32 + 1, number(day)?))
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

fn number(s: &str) -> Result<u32, DateError> {
    s.parse().map_err(|_| DateError::Shape)
}

fn is_leap(year: u32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// Days in `month` (1..=12) of `year`.
fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: u16, month: u8, day: u8) -> Date {
        Date { year, month, day }
    }

    #[test]
    fn dashed_dates_any_case_one_or_two_digit_day() {
        assert_eq!(parse_date("31-dec-2026"), Ok(date(2026, 12, 31)));
        assert_eq!(parse_date("1-JAN-2027"), Ok(date(2027, 1, 1)));
        assert_eq!(parse_date("01-Aug-2008"), Ok(date(2008, 8, 1)));
    }

    #[test]
    fn citrix_dates() {
        assert_eq!(parse_date("2038.0101"), Ok(date(2038, 1, 1)));
        assert_eq!(parse_date("2008.0801"), Ok(date(2008, 8, 1)));
        assert_eq!(parse_date("2008.801"), Err(DateError::Shape));
        assert_eq!(parse_date("2008.1301"), Err(DateError::Month("13".into())));
    }

    #[test]
    fn permanent_spellings() {
        for t in [
            "permanent",
            "PERMANENT",
            "Permanent",
            "0",
            "1-jan-0",
            "1-jan-00",
            "1-jan-0000",
        ] {
            assert_eq!(parse_expiry(t), Ok(Expiry::Permanent), "{t}");
        }
        assert_eq!(
            parse_expiry("31-dec-2026"),
            Ok(Expiry::On(date(2026, 12, 31)))
        );
    }

    #[test]
    fn year_zero_is_not_a_calendar_date() {
        assert_eq!(parse_date("1-jan-0"), Err(DateError::YearZero));
        assert_eq!(parse_date("0"), Err(DateError::Shape));
    }

    #[test]
    fn impossible_days_are_named() {
        let e = parse_expiry("31-feb-2026").unwrap_err();
        assert_eq!(e.to_string(), "day 31 does not exist in February");
        let e = parse_date("29-feb-2026").unwrap_err();
        assert_eq!(e.to_string(), "day 29 does not exist in February 2026");
        assert_eq!(parse_date("29-feb-2024"), Ok(date(2024, 2, 29)));
        assert_eq!(parse_date("29-feb-2000"), Ok(date(2000, 2, 29)));
        assert!(parse_date("29-feb-1900").is_err());
        assert!(parse_date("31-apr-2026").is_err());
        assert!(parse_date("0-jan-2026").is_err());
    }

    #[test]
    fn malformed_dates() {
        for t in [
            "",
            "-",
            "31-dec",
            "31-dec-26",
            "31-dec-2026-1",
            "123-dec-2026",
            "x-dec-2026",
            "31-dek-2026",
            "2026.12.31",
            "+1-jan-2026",
            "1-jan-02026",
        ] {
            assert!(parse_expiry(t).is_err(), "{t:?} should not parse");
        }
        assert_eq!(
            parse_date("1-dek-2026").unwrap_err().to_string(),
            "\"dek\" is not a month"
        );
    }
}

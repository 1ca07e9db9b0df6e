//! Capacities as people write them: `500G`, `1.5 TB`, `800GiB`, `2T`.
//!
//! Decimal units (`KB`, `MB`, `GB`, `TB`, and the bare `K`, `M`, `G`, `T`)
//! are powers of 1000, as disk vendors count; binary units (`KiB` ... `TiB`)
//! powers of 1024. Formatting uses humansize, in decimal units to match.

use humansize::{DECIMAL, format_size};

/// Why a string is not a size.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{input:?} is not a size: {reason} (examples: 500G, 1.5TB, 800GiB)")]
pub struct SizeError {
    pub input: String,
    pub reason: &'static str,
}

pub fn parse_size(input: &str) -> Result<u64, SizeError> {
    let err = |reason| SizeError {
        input: input.to_string(),
        reason,
    };
    let s = input.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(err("it must start with a number"));
    }
    let value: f64 = num.parse().map_err(|_| err("bad number"))?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "p" | "pb" => 1e15,
        "kib" => 1024.0,
        "mib" => 1024.0f64.powi(2),
        "gib" => 1024.0f64.powi(3),
        "tib" => 1024.0f64.powi(4),
        "pib" => 1024.0f64.powi(5),
        _ => return Err(err("unknown unit")),
    };
    let bytes = value * mult;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(err("too large"));
    }
    Ok(bytes.round() as u64)
}

/// `1.5 TB`-style rendering.
pub fn format_bytes(bytes: u64) -> String {
    format_size(bytes, DECIMAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_decimal_and_binary_units() {
        assert_eq!(parse_size("500G"), Ok(500_000_000_000));
        assert_eq!(parse_size("1.5 TB"), Ok(1_500_000_000_000));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1234"), Ok(1234));
        assert!(parse_size("G").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("").is_err());
    }

    #[test]
    fn sizes_format_for_people() {
        assert_eq!(format_bytes(1_500_000_000_000), "1.50 TB");
    }
}

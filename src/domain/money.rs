//! USD amounts as integer micro-dollars, parsed from decimal text without ever touching floats.

pub const MICROS_PER_USD: i64 = 1_000_000;
/// The largest daily budget an operator may set: a typo guard, not a business rule.
pub const MAX_DAILY_BUDGET_USD: i64 = 10_000_000;

/// `"12.5"` → 12_500_000. At most six decimals; no sign, no exponent.
pub fn parse_usd(s: &str) -> Result<i64, String> {
    let s = s.trim().trim_start_matches('$');
    if s.starts_with('-') {
        return Err(format!(
            "{s} is negative; budgets are zero or more USD (use `none` to remove one)"
        ));
    }
    let bad = || format!("{s:?} is not an amount in USD (e.g. 25 or 12.50, at most 6 decimals)");
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 6
    {
        return Err(bad());
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    if whole > MAX_DAILY_BUDGET_USD {
        return Err(format!(
            "{s} USD is more than the maximum of {MAX_DAILY_BUDGET_USD} USD"
        ));
    }
    let frac_micros: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().map_err(|_| bad())?
    };
    Ok(whole * MICROS_PER_USD + frac_micros)
}

/// 12_500_000 → `"12.50"`-style text with as many decimals as needed (at least two).
pub fn format_usd(micros: i64) -> String {
    let whole = micros / MICROS_PER_USD;
    let frac = format!("{:06}", (micros % MICROS_PER_USD).abs());
    let trimmed = frac.trim_end_matches('0');
    format!("{whole}.{:0<2}", trimmed)
}

/// Micro-USD as a decimal USD number for display (exact for every value we produce: at most six
/// decimals). Stored and computed amounts stay integers.
pub fn usd(micros: i64) -> serde_json::Value {
    let text = format!("{}.{:06}", micros / 1_000_000, (micros % 1_000_000).abs());
    serde_json::from_str::<serde_json::Value>(text.trim_end_matches('0').trim_end_matches('.'))
        .unwrap_or(serde_json::Value::from(0))
}

#[cfg(test)]
mod tests {
    #[test]
    fn micro_usd_renders_as_exact_decimals() {
        use serde_json::json;
        assert_eq!(usd(8000), json!(0.008));
        assert_eq!(usd(64000), json!(0.064));
        assert_eq!(usd(1_500_000), json!(1.5));
        assert_eq!(usd(2_000_000), json!(2));
        assert_eq!(usd(0), json!(0));
    }

    use super::*;

    #[test]
    fn usd_parses_exactly_and_refuses_the_rest() {
        assert_eq!(parse_usd("25"), Ok(25_000_000));
        assert_eq!(parse_usd("12.5"), Ok(12_500_000));
        assert_eq!(parse_usd("$0.008"), Ok(8_000));
        assert_eq!(parse_usd(".25"), Ok(250_000));
        for bad in ["", "-1", "1e3", "1.0000001", "abc", "1.2.3", "99999999999"] {
            assert!(parse_usd(bad).is_err(), "{bad}");
        }
        assert_eq!(format_usd(12_500_000), "12.50");
        assert_eq!(format_usd(8_000), "0.008");
        assert_eq!(format_usd(0), "0.00");
    }
}

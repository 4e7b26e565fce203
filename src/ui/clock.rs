//! The plant clock: the system time in, a label in the site's time zone out.

/// "2026-11-24 21:40:12 CET" in the plant's IANA zone, or UTC (said so)
/// when the zone is unknown to this machine.
pub fn now_label(time_zone: &str) -> String {
    label_at(jiff::Timestamp::now(), time_zone)
}

pub fn label_at(ts: jiff::Timestamp, time_zone: &str) -> String {
    match ts.in_tz(time_zone) {
        Ok(z) => z.strftime("%Y-%m-%d %H:%M:%S %Z").to_string(),
        Err(_) => format!(
            "{} UTC (zone {time_zone} unknown)",
            ts.strftime("%Y-%m-%d %H:%M:%S")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn site_time_carries_its_zone() {
        let ts: jiff::Timestamp = "2026-07-01T10:00:00Z".parse().expect("valid timestamp");
        assert_eq!(label_at(ts, "Europe/Paris"), "2026-07-01 12:00:00 CEST");
        assert_eq!(label_at(ts, "UTC"), "2026-07-01 10:00:00 UTC");
        assert!(label_at(ts, "Mars/Olympus").ends_with("UTC (zone Mars/Olympus unknown)"));
    }
}

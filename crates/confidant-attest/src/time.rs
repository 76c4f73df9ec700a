//! Times as people read them in messages, audit records and JSON output.

use std::time::{SystemTime, UNIX_EPOCH};

/// `t` as an RFC 3339 UTC time to the second (`2025-06-19T12:00:00Z`); fractions of a second are
/// dropped (rounded towards the past). A time too far from 1970 to have a calendar date prints
/// as `SECONDS (Unix seconds)`. The one formatting of times the workspace uses: verifier
/// messages, `confidant verify`/`attest` output and the coordinator's records.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok(),
        Err(e) => {
            let d = e.duration();
            i64::try_from(d.as_secs())
                .ok()
                .and_then(|s| s.checked_add(i64::from(d.subsec_nanos() > 0)))
                .map(|s| -s)
        }
    };
    secs.and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("{} (Unix seconds)", unix_seconds(t)))
}

/// Whole seconds since 1970 (negative before), for times without a calendar date.
fn unix_seconds(t: SystemTime) -> String {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs().to_string(),
        Err(e) => format!("-{}", e.duration().as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_utc_to_the_second() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_750_334_400);
        assert_eq!(rfc3339(t), "2025-06-19T12:00:00Z");
        assert_eq!(
            rfc3339(t + Duration::from_millis(999)),
            "2025-06-19T12:00:00Z"
        );
    }

    #[test]
    fn rounds_towards_the_past_before_1970() {
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_millis(500)),
            "1969-12-31T23:59:59Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(1)),
            "1969-12-31T23:59:59Z"
        );
    }

    #[test]
    fn times_without_a_calendar_date_print_as_unix_seconds() {
        let secs = 1u64 << 60;
        if let Some(t) = UNIX_EPOCH.checked_add(Duration::from_secs(secs)) {
            assert_eq!(rfc3339(t), format!("{secs} (Unix seconds)"));
        }
    }

    #[test]
    fn equals_chrono_for_ordinary_times() {
        for secs in [0u64, 1, 59, 951_782_400, 1_700_000_000, 4_102_444_800] {
            let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_nanos(123);
            assert_eq!(
                rfc3339(t),
                chrono::DateTime::<chrono::Utc>::from(t)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
        }
    }
}

//! Cron expressions exactly as the spin-trigger-cron plugin accepts them, evaluated in UTC.
//!
//! The plugin hands `cron_expression` to `tokio-cron-scheduler` 0.13, which parses it with
//! croner 2.1 set to `with_seconds_required()` and `with_dom_and_dow()` (facts §8.5). So:
//! - **exactly six fields**, `sec min hour day-of-month month day-of-week`; five or seven fields
//!   are refused (the plugin's README still shows a seventh, year field: croner rejects it);
//! - `?` means `*` in any field; `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`,
//!   `@hourly` (second 0); month and weekday names; `L`, `W`, `#`; `7` is Sunday;
//! - `a/n` means "from a, every n" (`1/2`: odd seconds);
//! - when both day-of-month and day-of-week are restricted, **both** must match (AND, not
//!   classic cron's OR).
//!
//! lepton evaluates with croner 4 (the maintained line of the same crate) set up the same way:
//! seconds required, no year field, day-of-month AND day-of-week, lenient `a/n` steps. Two
//! spellings differ between the lines, and are brought back to croner 2.1's behaviour before
//! parsing: croner 4 refuses `?` outside the day fields (2.1 turned every `?` into `*`), and
//! accepts a bare `/n` step (2.1 refused it). The tests below pin expressions and their next
//! occurrences to what croner 2.1 computes.

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed `cron_expression`.
#[derive(Debug, Clone)]
pub struct CronExpression {
    text: String,
    cron: Cron,
}

impl CronExpression {
    /// Parse `text` as the plugin does; the error says what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let normalized = text.replace('?', "*");
        if let Some(field) = normalized
            .split_whitespace()
            .find(|field| field.starts_with('/'))
        {
            return Err(format!(
                "field `{field}` has a step without a start (write `*{field}` or `0{field}`)"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Required)
            .year(Year::Disallowed)
            .dom_and_dow(true)
            .sloppy_ranges(true)
            .build()
            .parse(&normalized)
            .map_err(|e| match e {
                croner::errors::CronError::InvalidPattern(_) => format!(
                    "{e} (six fields: second minute hour day-of-month month day-of-week, \
                     as the spin-trigger-cron plugin requires)"
                ),
                other => other.to_string(),
            })?;
        Ok(Self {
            text: text.to_string(),
            cron,
        })
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first tick strictly after `after`, if there is one.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&after, false).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid date")
    }

    /// The next three ticks after 2026-01-30 23:59:58 UTC.
    fn next3(text: &str) -> Result<Vec<String>, String> {
        let expr = CronExpression::parse(text)?;
        let mut from = at(2026, 1, 30, 23, 59, 58);
        let mut out = Vec::new();
        for _ in 0..3 {
            let Some(next) = expr.next_after(from) else {
                break;
            };
            out.push(next.format("%Y-%m-%d %H:%M:%S").to_string());
            from = next;
        }
        Ok(out)
    }

    /// Expressions and their ticks as croner 2.1 (the plugin's parser) computes them.
    #[test]
    fn expressions_tick_as_the_plugin_computes_them() {
        let cases: &[(&str, [&str; 3])] = &[
            (
                "* * * * * *",
                [
                    "2026-01-30 23:59:59",
                    "2026-01-31 00:00:00",
                    "2026-01-31 00:00:01",
                ],
            ),
            (
                "1/2 * * * * *",
                [
                    "2026-01-30 23:59:59",
                    "2026-01-31 00:00:01",
                    "2026-01-31 00:00:03",
                ],
            ),
            (
                "0/15 * * * * *",
                [
                    "2026-01-31 00:00:00",
                    "2026-01-31 00:00:15",
                    "2026-01-31 00:00:30",
                ],
            ),
            (
                "5/5 * * * * *",
                [
                    "2026-01-31 00:00:05",
                    "2026-01-31 00:00:10",
                    "2026-01-31 00:00:15",
                ],
            ),
            (
                "? * * * * ?",
                [
                    "2026-01-30 23:59:59",
                    "2026-01-31 00:00:00",
                    "2026-01-31 00:00:01",
                ],
            ),
            (
                "0 30 9 * * MON-FRI",
                [
                    "2026-02-02 09:30:00",
                    "2026-02-03 09:30:00",
                    "2026-02-04 09:30:00",
                ],
            ),
            // Day-of-month AND day-of-week: the 1st of a month that is a Monday.
            (
                "0 0 12 1 * MON",
                [
                    "2026-06-01 12:00:00",
                    "2027-02-01 12:00:00",
                    "2027-03-01 12:00:00",
                ],
            ),
            (
                "@hourly",
                [
                    "2026-01-31 00:00:00",
                    "2026-01-31 01:00:00",
                    "2026-01-31 02:00:00",
                ],
            ),
            (
                "@weekly",
                [
                    "2026-02-01 00:00:00",
                    "2026-02-08 00:00:00",
                    "2026-02-15 00:00:00",
                ],
            ),
            (
                "0 0 0 L * *",
                [
                    "2026-01-31 00:00:00",
                    "2026-02-28 00:00:00",
                    "2026-03-31 00:00:00",
                ],
            ),
            (
                "0 0 0 * * 1#2",
                [
                    "2026-02-09 00:00:00",
                    "2026-03-09 00:00:00",
                    "2026-04-13 00:00:00",
                ],
            ),
            (
                "0 0 0 15W * *",
                [
                    "2026-02-16 00:00:00",
                    "2026-03-16 00:00:00",
                    "2026-04-15 00:00:00",
                ],
            ),
            (
                "0 0 0 * * 7",
                [
                    "2026-02-01 00:00:00",
                    "2026-02-08 00:00:00",
                    "2026-02-15 00:00:00",
                ],
            ),
            (
                "0 0 0 * jan *",
                [
                    "2026-01-31 00:00:00",
                    "2027-01-01 00:00:00",
                    "2027-01-02 00:00:00",
                ],
            ),
            (
                "0 0 0 29 2 *",
                [
                    "2028-02-29 00:00:00",
                    "2032-02-29 00:00:00",
                    "2036-02-29 00:00:00",
                ],
            ),
        ];
        for (text, want) in cases {
            let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
            assert_eq!(next3(text), Ok(want), "{text:?}");
        }
        // Parses, never fires.
        assert_eq!(next3("0 0 0 31 2 *"), Ok(vec![]));
    }

    #[test]
    fn what_the_plugin_refuses_is_refused() {
        for text in [
            "",
            "  ",
            "* * * * *",
            "* * * * * * *",
            "0 0 0 * * * 2030",
            "60 * * * * *",
            "0 0 25 * * *",
            "/10 * * * * *",
            "@reboot",
            "abc",
        ] {
            assert!(CronExpression::parse(text).is_err(), "{text:?} parsed");
        }
        let five = CronExpression::parse("*/5 * * * *").unwrap_err();
        assert!(five.contains("six fields"), "{five}");
        let step = CronExpression::parse("/10 * * * * *").unwrap_err();
        assert!(step.contains("`/10`"), "{step}");
    }
}

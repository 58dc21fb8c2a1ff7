//! The local stand-in for EventBridge schedules: `make dev` runs every `Schedule` event of the
//! template (the backup, the restore check, the health probe) at the times its expression names,
//! with the event's `Input`, through the same handler Lambda calls. A variable that names the
//! deployed API (`https://${LumiApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}`, the health
//! probe's `PROBE_BASE_URL`) names the local gateway instead ([`local_api_urls`]).
//!
//! Expressions are EventBridge's: `rate(1 hour)` and the six-field
//! `cron(minutes hours day-of-month month day-of-week year)`, with `*`, `?`, lists, ranges and
//! `/` steps (the `L`, `W` and `#` forms are refused, not misread). Times are UTC.

use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use lumi_shared::{Env, telemetry::LineSink};
use time::{Duration, OffsetDateTime, Weekday};

use crate::stack::LocalStack;

/// Starts a task per `Schedule` event of the template; returns `(function, event, expression)`
/// of each, for the start-up banner. `api_base` is where the local gateway serves
/// (`http://127.0.0.1:3000`); the functions' EMF lines go to `metrics_sink` (the gateway's).
pub async fn spawn_schedules(
    stack: &LocalStack,
    api_base: &str,
    metrics_sink: Arc<dyn LineSink>,
) -> anyhow::Result<Vec<(String, String, String)>> {
    let mut started = Vec::new();
    for event in stack.template.schedules()? {
        let expression = stack.names.resolve(&event.expression)?;
        let schedule = Schedule::parse(&expression)
            .with_context(|| format!("{} schedule {}", event.function, event.name))?;
        let handler = crate::functions::event_handler_of(&event.function)
            .ok_or_else(|| anyhow!("no local handler for {}", event.function))?;
        let input: serde_json::Value = match &event.input {
            Some(text) => serde_json::from_str(text)
                .with_context(|| format!("{} schedule {}: Input", event.function, event.name))?,
            None => {
                serde_json::json!({ "detail-type": "Scheduled Event", "source": "aws.events", "detail": {} })
            }
        };
        // The function's own start-up, with its environment resolved against this stack.
        let mut env = stack.function_env(&event.function)?;
        local_api_urls(stack, &mut env, api_base)?;
        let config = lumi_shared::Config::from_env(&event.function, &env)?;
        let platform = lumi_shared::Platform::with_metrics_sink(config, metrics_sink.clone()).await;
        platform.mark_started();
        let name = format!("{}/{}", event.function, event.name);
        started.push((event.function.clone(), event.name.clone(), expression));
        tokio::spawn(async move {
            let mut last = OffsetDateTime::now_utc();
            while let Some(next) = schedule.next_after(last) {
                let wait = (next - OffsetDateTime::now_utc()).max(Duration::ZERO);
                // A schedule's clock, not a test's wait: this is `make dev` being EventBridge.
                tokio::time::sleep(wait.unsigned_abs()).await;
                last = next;
                match handler(platform.clone(), input.clone()).await {
                    Ok(output) => tracing::info!(schedule = %name, %output, "scheduled run done"),
                    Err(error) => tracing::error!(schedule = %name, %error, "scheduled run failed"),
                }
            }
        });
    }
    Ok(started)
}

/// Points every variable of `env` that names a deployed HttpApi of the template (its
/// `https://<api id>.execute-api.<region>.<suffix>` endpoint, resolved as the local stack
/// resolves it) at `api_base`, the local gateway, keeping the path after it.
pub fn local_api_urls(stack: &LocalStack, env: &mut Env, api_base: &str) -> anyhow::Result<()> {
    let api_base = api_base.trim_end_matches('/');
    for api in stack.template.of_kind("AWS::Serverless::HttpApi") {
        let spelled = format!(
            "!Sub https://${{{}}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}",
            api.logical_id
        );
        let deployed = stack.names.resolve(&serde_norway::from_str(&spelled)?)?;
        let local: Vec<(String, String)> = env
            .iter()
            .filter_map(|(key, value)| {
                let rest = value.strip_prefix(deployed.as_str())?;
                (rest.is_empty() || rest.starts_with('/'))
                    .then(|| (key.to_owned(), format!("{api_base}{rest}")))
            })
            .collect();
        for (key, value) in local {
            env.set(key, value);
        }
    }
    Ok(())
}

/// A parsed schedule expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Rate(std::time::Duration),
    Cron(Box<Cron>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<u8>,
    hours: Vec<u8>,
    /// Empty: `?` (day-of-week decides).
    days_of_month: Vec<u8>,
    months: Vec<u8>,
    /// 1 = Sunday ... 7 = Saturday; empty: `?`.
    days_of_week: Vec<u8>,
    years: Option<Vec<u16>>,
}

impl Schedule {
    pub fn parse(expression: &str) -> anyhow::Result<Self> {
        let expression = expression.trim();
        if let Some(inner) = expression
            .strip_prefix("rate(")
            .and_then(|e| e.strip_suffix(')'))
        {
            let (count, unit) = inner
                .trim()
                .split_once(' ')
                .ok_or_else(|| anyhow!("rate({inner}): expected `rate(N unit)`"))?;
            let count: u64 = count
                .parse()
                .map_err(|_| anyhow!("rate: {count} is not a number"))?;
            let seconds = match unit.trim() {
                "minute" | "minutes" => 60,
                "hour" | "hours" => 3600,
                "day" | "days" => 86_400,
                other => bail!("rate: unknown unit {other}"),
            };
            if count == 0 {
                bail!("rate: the count must be at least 1");
            }
            return Ok(Self::Rate(std::time::Duration::from_secs(count * seconds)));
        }
        if let Some(inner) = expression
            .strip_prefix("cron(")
            .and_then(|e| e.strip_suffix(')'))
        {
            let fields: Vec<&str> = inner.split_whitespace().collect();
            let [minutes, hours, dom, month, dow, year] = fields[..] else {
                bail!("cron({inner}): expected six fields");
            };
            let cron = Cron {
                minutes: field(minutes, 0, 59, &[])?,
                hours: field(hours, 0, 23, &[])?,
                days_of_month: if dom == "?" {
                    Vec::new()
                } else {
                    field(dom, 1, 31, &[])?
                },
                months: field(month, 1, 12, &MONTHS)?,
                days_of_week: if dow == "?" {
                    Vec::new()
                } else {
                    field(dow, 1, 7, &DAYS)?
                },
                years: if year == "*" {
                    None
                } else {
                    Some(field_u16(year, 1970, 2199)?)
                },
            };
            if cron.days_of_month.is_empty() == cron.days_of_week.is_empty()
                && !(dom == "*" && dow == "*")
            {
                bail!(
                    "cron({inner}): give exactly one of day-of-month and day-of-week, the other `?`"
                );
            }
            return Ok(Self::Cron(Box::new(cron)));
        }
        bail!("{expression}: not a rate() or cron() expression")
    }

    /// The first firing strictly after `after` (rates count from `after`); `None` if it never
    /// fires again (a cron whose years have passed).
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        match self {
            Self::Rate(every) => Some(after + *every),
            Self::Cron(cron) => cron.next_after(after),
        }
    }
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn value(text: &str, low: u16, names: &[&str]) -> anyhow::Result<u16> {
    if let Some(index) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(low + index as u16);
    }
    if text.contains(['L', 'W', '#']) {
        bail!("cron: `{text}` (L, W, #) is not supported locally");
    }
    text.parse()
        .map_err(|_| anyhow!("cron: `{text}` is not a number"))
}

fn field_u16(text: &str, low: u16, high: u16) -> anyhow::Result<Vec<u16>> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => (
                range,
                step.parse::<u16>()
                    .map_err(|_| anyhow!("cron: bad step in `{part}`"))?,
            ),
            None => (part, 1),
        };
        if step == 0 {
            bail!("cron: a step of 0 in `{part}`");
        }
        let (from, to) = if range == "*" {
            (low, high)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, low, &[])?, value(b, low, &[])?)
        } else {
            let start = value(range, low, &[])?;
            (start, if part.contains('/') { high } else { start })
        };
        if from < low || to > high || from > to {
            bail!("cron: `{part}` is outside {low}-{high}");
        }
        out.extend((from..=to).step_by(step as usize));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn field(text: &str, low: u8, high: u8, names: &[&str]) -> anyhow::Result<Vec<u8>> {
    // Names (JAN, MON) are turned into numbers first, then the numeric rules apply.
    let numeric: String = text
        .split(',')
        .map(|part| {
            part.split('/')
                .enumerate()
                .map(|(i, piece)| {
                    if i > 0 {
                        return Ok(piece.to_owned());
                    }
                    piece
                        .split('-')
                        .map(|v| {
                            if v == "*" {
                                Ok(v.to_owned())
                            } else {
                                value(v, u16::from(low), names).map(|n| n.to_string())
                            }
                        })
                        .collect::<anyhow::Result<Vec<_>>>()
                        .map(|v| v.join("-"))
                })
                .collect::<anyhow::Result<Vec<_>>>()
                .map(|v| v.join("/"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?
        .join(",");
    Ok(field_u16(&numeric, u16::from(low), u16::from(high))?
        .into_iter()
        .map(|v| v as u8)
        .collect())
}

impl Cron {
    fn matches_day(&self, at: OffsetDateTime) -> bool {
        let dow = match at.weekday() {
            Weekday::Sunday => 1,
            Weekday::Monday => 2,
            Weekday::Tuesday => 3,
            Weekday::Wednesday => 4,
            Weekday::Thursday => 5,
            Weekday::Friday => 6,
            Weekday::Saturday => 7,
        };
        let dom_ok = self.days_of_month.is_empty() || self.days_of_month.contains(&at.day());
        let dow_ok = self.days_of_week.is_empty() || self.days_of_week.contains(&dow);
        dom_ok
            && dow_ok
            && self.months.contains(&u8::from(at.month()))
            && self
                .years
                .as_ref()
                .is_none_or(|years| years.contains(&(at.year() as u16)))
    }

    fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let start =
            after.replace_second(0).ok()?.replace_nanosecond(0).ok()? + Duration::minutes(1);
        // Day by day, then the first matching hour and minute of a matching day: at most a few
        // thousand steps for any expression that fires within the next ten years.
        let mut day = start.replace_time(time::Time::MIDNIGHT);
        for _ in 0..(366 * 10) {
            if self.matches_day(day) {
                for &hour in &self.hours {
                    for &minute in &self.minutes {
                        let at = day.replace_time(time::Time::from_hms(hour, minute, 0).ok()?);
                        if at >= start {
                            return Some(at);
                        }
                    }
                }
            }
            day += Duration::days(1);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use time::macros::datetime;

    #[test]
    fn rates() {
        assert_eq!(
            Schedule::parse("rate(1 hour)").unwrap(),
            Schedule::Rate(std::time::Duration::from_secs(3600))
        );
        assert_eq!(
            Schedule::parse("rate(5 minutes)").unwrap(),
            Schedule::Rate(std::time::Duration::from_secs(300))
        );
        for bad in [
            "rate(0 hours)",
            "rate(1 fortnight)",
            "rate(x hours)",
            "hourly",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_monthly_restore_check_fires_on_the_first_at_four() {
        let monthly = Schedule::parse("cron(0 4 1 * ? *)").unwrap();
        assert_eq!(
            monthly.next_after(datetime!(2026-11-23 01:00 UTC)),
            Some(datetime!(2026-12-01 04:00 UTC))
        );
        assert_eq!(
            monthly.next_after(datetime!(2026-12-01 04:00 UTC)),
            Some(datetime!(2027-01-01 04:00 UTC)),
            "strictly after"
        );
    }

    #[test]
    fn cron_fields_lists_ranges_steps_and_names() {
        let weekdays = Schedule::parse("cron(0/15 9-17 ? * MON-FRI *)").unwrap();
        // Saturday 2026-11-28 -> Monday 09:00.
        assert_eq!(
            weekdays.next_after(datetime!(2026-11-27 17:50 UTC)),
            Some(datetime!(2026-11-30 09:00 UTC))
        );
        assert_eq!(
            weekdays.next_after(datetime!(2026-11-30 09:01 UTC)),
            Some(datetime!(2026-11-30 09:15 UTC))
        );
        let once = Schedule::parse("cron(30 2 15 JUN ? 2027)").unwrap();
        assert_eq!(
            once.next_after(datetime!(2026-01-01 00:00 UTC)),
            Some(datetime!(2027-06-15 02:30 UTC))
        );
        assert_eq!(once.next_after(datetime!(2027-07-01 00:00 UTC)), None);
        for bad in [
            "cron(0 4 1 * *)",
            "cron(0 4 1 * 2 *)",
            "cron(0 25 * * ? *)",
            "cron(0 4 L * ? *)",
            "cron(0/0 4 * * ? *)",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }
}

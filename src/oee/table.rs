//! OEE tables: machines' inputs, the shift calendar (or none: every hour
//! planned, said so), the loss rules and a grouping in; one [`Row`] per
//! shift, day, machine or line, and the total, out. Every row comes from
//! [`super::compute`] and [`super::Oee::merge`]: the same numbers in every
//! view.

use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::compute::{MachineInput, Oee, compute};
use super::rules::LossRules;
use crate::calendar::ShiftCalendar;

/// How rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Shift,
    Day,
    Machine,
    Line,
}

impl By {
    pub fn parse(s: &str) -> Option<By> {
        Some(match s {
            "shift" => By::Shift,
            "day" => By::Day,
            "machine" => By::Machine,
            "line" => By::Line,
            _ => return None,
        })
    }
}

/// A period with its planned windows.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub label: String,
    pub from_us: i64,
    pub to_us: i64,
    pub planned: Vec<(i64, i64)>,
}

/// One row of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub label: String,
    pub oee: Oee,
}

fn day_start(tz: &TimeZone, d: Date) -> i64 {
    d.to_zoned(tz.clone())
        .map_or(0, |z| z.timestamp().as_microsecond())
}

/// The periods of [from_us, to_us): shifts or days (in the calendar's
/// zone, else `time_zone`), or the whole range.
pub fn periods(
    calendar: Option<&ShiftCalendar>,
    time_zone: &str,
    from_us: i64,
    to_us: i64,
    by: By,
) -> Vec<Period> {
    let planned = |a: i64, b: i64| -> Vec<(i64, i64)> {
        match calendar {
            Some(c) => c
                .working(a, b)
                .iter()
                .map(|w| (w.start_us, w.end_us))
                .collect(),
            None => vec![(a, b)],
        }
    };
    let tz_name = calendar.map_or(time_zone, |c| c.time_zone.as_str());
    let tz = TimeZone::get(tz_name).unwrap_or(TimeZone::UTC);
    match (by, calendar) {
        (By::Shift, Some(c)) => c
            .instances(from_us, to_us)
            .into_iter()
            .map(|i| Period {
                label: format!("{} {}", i.date, i.name),
                from_us: i.start_us.max(from_us),
                to_us: i.end_us.min(to_us),
                planned: i.working,
            })
            .collect(),
        (By::Shift | By::Day, _) => {
            let date = |us: i64| {
                jiff::Timestamp::from_microsecond(us)
                    .map(|t| t.to_zoned(tz.clone()).date())
                    .unwrap_or(Date::constant(1970, 1, 1))
            };
            let mut out = Vec::new();
            let mut d = date(from_us);
            loop {
                let a = day_start(&tz, d).max(from_us);
                let next = d.tomorrow().unwrap_or(d);
                let b = day_start(&tz, next).min(to_us);
                if b > a {
                    out.push(Period {
                        label: d.to_string(),
                        from_us: a,
                        to_us: b,
                        planned: planned(a, b),
                    });
                }
                if b >= to_us || next == d {
                    break;
                }
                d = next;
            }
            out
        }
        (By::Machine | By::Line, _) => vec![Period {
            label: "period".into(),
            from_us,
            to_us,
            planned: planned(from_us, to_us),
        }],
    }
}

/// The table: `lines[i]` is machine i's line (ISA-95 work center).
pub fn table(
    inputs: &[MachineInput],
    lines: &[String],
    periods: &[Period],
    by: By,
    rules: &LossRules,
) -> (Vec<Row>, Oee) {
    let mut rows: Vec<Row> = Vec::new();
    let mut total = Oee::default();
    match by {
        By::Shift | By::Day => {
            for p in periods {
                let mut o = Oee::default();
                for m in inputs {
                    o.merge(&compute(m, &p.planned, rules));
                }
                total.merge(&o);
                rows.push(Row {
                    label: p.label.clone(),
                    oee: o,
                });
            }
        }
        By::Machine | By::Line => {
            let planned: Vec<(i64, i64)> = periods
                .iter()
                .flat_map(|p| p.planned.iter().copied())
                .collect();
            for (i, m) in inputs.iter().enumerate() {
                let o = compute(m, &planned, rules);
                total.merge(&o);
                let label = if by == By::Machine {
                    m.asset_id.clone()
                } else {
                    lines.get(i).cloned().unwrap_or_default()
                };
                match rows.iter_mut().find(|r| r.label == label) {
                    Some(r) => r.oee.merge(&o),
                    None => rows.push(Row { label, oee: o }),
                }
            }
        }
    }
    (rows, total)
}

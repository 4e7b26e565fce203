//! The shift calendar: a TOML file in (shifts per weekday with breaks, in
//! the plant's time zone; planned downtime; holidays), the plant's planned
//! working windows over any period out. One definition for everything
//! that needs planned time: the what-if model today, OEE's planned busy
//! time later.
//!
//! ```toml
//! version = 1
//! time_zone = "Europe/Paris"
//!
//! [[shift]]
//! name = "early"
//! days = ["mon", "tue", "wed", "thu", "fri"]
//! start = "06:00"
//! end = "14:00"
//! breaks = [["09:00", "09:15"], ["12:00", "12:30"]]
//!
//! [[shift]]
//! name = "night"
//! days = ["mon", "tue", "wed", "thu"]
//! start = "22:00"
//! end = "06:00"            # crosses midnight: ends the next day
//!
//! [[planned_downtime]]
//! from = "2026-12-02 06:00"
//! to = "2026-12-02 10:00"
//! reason = "preventive maintenance"
//!
//! [[holiday]]
//! date = "2026-12-25"
//! ```
//!
//! Civil times are resolved in the zone each day, so a shift keeps its
//! clock times across daylight-saving changes (the night of the change is
//! an hour shorter or longer, as it is on the floor); a time that does not
//! exist that night is taken as the clock shows it after the jump. A shift
//! belongs to the day it starts: a holiday removes the shifts that start
//! on it.

use std::path::{Path, PathBuf};

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use serde::Deserialize;
use toml::Spanned;

/// The calendar file format this build reads.
pub const CALENDAR_FORMAT_VERSION: u32 = 1;

/// Everything that can go wrong reading a calendar.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("cannot read shift calendar {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", located(path, "shift calendar ", problems))]
    File {
        path: PathBuf,
        /// (line, column, message)
        problems: Vec<(usize, usize, String)>,
    },
}

/// Problems of a file as `<what> refused, N problem(s):` followed by one
/// `file:line:column: message` line each (what-if's files use it too).
pub(crate) fn located(path: &Path, what: &str, problems: &[(usize, usize, String)]) -> String {
    let mut out = format!(
        "{}: {what}refused, {} problem(s):",
        path.display(),
        problems.len()
    );
    for (l, c, m) in problems {
        out.push_str(&format!("\n  {}:{l}:{c}: {m}", path.display()));
    }
    out
}

/// One shift pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Shift {
    pub name: String,
    /// Monday first.
    pub days: [bool; 7],
    pub start: Time,
    pub end: Time,
    pub breaks: Vec<(Time, Time)>,
}

/// A planned working window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub start_us: i64,
    pub end_us: i64,
    pub shift: String,
}

/// One shift as it falls on one day.
#[derive(Debug, Clone, PartialEq)]
pub struct ShiftInstance {
    pub name: String,
    /// The day it starts (in the calendar's zone).
    pub date: Date,
    pub start_us: i64,
    pub end_us: i64,
    /// Planned working windows inside it, µs.
    pub working: Vec<(i64, i64)>,
}

/// The loaded calendar.
#[derive(Debug, Clone)]
pub struct ShiftCalendar {
    pub source: PathBuf,
    pub time_zone: String,
    tz: TimeZone,
    pub shifts: Vec<Shift>,
    /// (from, to, reason), µs.
    pub downtime: Vec<(i64, i64, String)>,
    pub holidays: Vec<Date>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileToml {
    version: Spanned<u32>,
    time_zone: Spanned<String>,
    #[serde(default)]
    shift: Vec<ShiftToml>,
    #[serde(default)]
    planned_downtime: Vec<DowntimeToml>,
    #[serde(default)]
    holiday: Vec<HolidayToml>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShiftToml {
    name: String,
    days: Vec<Spanned<String>>,
    start: Spanned<String>,
    end: Spanned<String>,
    #[serde(default)]
    breaks: Vec<Spanned<(String, String)>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DowntimeToml {
    from: Spanned<String>,
    to: Spanned<String>,
    #[serde(default)]
    reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HolidayToml {
    date: Spanned<String>,
    #[serde(default)]
    #[allow(dead_code)]
    name: String,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
    (line, column)
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl ShiftCalendar {
    pub fn load(path: &Path) -> Result<Self, CalendarError> {
        let text = std::fs::read_to_string(path).map_err(|source| CalendarError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, CalendarError> {
        let f: FileToml = toml::from_str(text).map_err(|e| {
            let (l, c) = e.span().map_or((1, 1), |s| line_col(text, s.start));
            CalendarError::File {
                path: path.to_path_buf(),
                problems: vec![(l, c, e.message().to_string())],
            }
        })?;
        let mut problems = Vec::new();
        let mut at = |span: std::ops::Range<usize>, m: String| {
            let (l, c) = line_col(text, span.start);
            problems.push((l, c, m));
        };
        if *f.version.get_ref() != CALENDAR_FORMAT_VERSION {
            at(
                f.version.span(),
                format!(
                    "version {} is not {CALENDAR_FORMAT_VERSION}, the calendar format this build reads",
                    f.version.get_ref()
                ),
            );
        }
        let tz = match TimeZone::get(f.time_zone.get_ref()) {
            Ok(tz) => tz,
            Err(_) => {
                at(
                    f.time_zone.span(),
                    format!(
                        "unknown time zone {:?} (an IANA name, e.g. Europe/Paris)",
                        f.time_zone.get_ref()
                    ),
                );
                TimeZone::UTC
            }
        };
        let time = |s: &Spanned<String>, at: &mut dyn FnMut(std::ops::Range<usize>, String)| {
            s.get_ref().parse::<Time>().map_err(|_| {
                at(
                    s.span(),
                    format!("{:?} is not a time of day (HH:MM)", s.get_ref()),
                );
            })
        };
        let mut shifts = Vec::new();
        for sh in &f.shift {
            let mut days = [false; 7];
            for d in &sh.days {
                match DAYS
                    .iter()
                    .position(|x| d.get_ref().to_ascii_lowercase().starts_with(x))
                {
                    Some(i) => days[i] = true,
                    None => at(
                        d.span(),
                        format!("{:?} is not a weekday (mon … sun)", d.get_ref()),
                    ),
                }
            }
            let (Ok(start), Ok(end)) = (time(&sh.start, &mut at), time(&sh.end, &mut at)) else {
                continue;
            };
            if start == end {
                at(sh.end.span(), "a shift must not end when it starts".into());
            }
            let mut breaks = Vec::new();
            for b in &sh.breaks {
                let (a, z) = b.get_ref();
                match (a.parse::<Time>(), z.parse::<Time>()) {
                    (Ok(a), Ok(z)) if a != z => breaks.push((a, z)),
                    _ => at(
                        b.span(),
                        format!(
                            "break {b:?} is not two different times of day (HH:MM)",
                            b = b.get_ref()
                        ),
                    ),
                }
            }
            shifts.push(Shift {
                name: sh.name.clone(),
                days,
                start,
                end,
                breaks,
            });
        }
        let when = |s: &Spanned<String>, at: &mut dyn FnMut(std::ops::Range<usize>, String)| {
            if let Ok(ts) = s.get_ref().parse::<jiff::Timestamp>() {
                return Ok(ts.as_microsecond());
            }
            s.get_ref()
                .trim()
                .replace(' ', "T")
                .parse::<DateTime>()
                .ok()
                .and_then(|dt| tz.to_ambiguous_zoned(dt).compatible().ok())
                .map(|z| z.timestamp().as_microsecond())
                .ok_or_else(|| {
                    at(
                        s.span(),
                        format!(
                            "{:?} is not a time (YYYY-MM-DD HH:MM, plant time)",
                            s.get_ref()
                        ),
                    );
                })
        };
        let mut downtime = Vec::new();
        for d in &f.planned_downtime {
            if let (Ok(a), Ok(b)) = (when(&d.from, &mut at), when(&d.to, &mut at)) {
                if b <= a {
                    at(
                        d.to.span(),
                        "planned downtime must end after it starts".into(),
                    );
                } else {
                    downtime.push((a, b, d.reason.clone()));
                }
            }
        }
        let mut holidays = Vec::new();
        for h in &f.holiday {
            match h.date.get_ref().parse::<Date>() {
                Ok(d) => holidays.push(d),
                Err(_) => at(
                    h.date.span(),
                    format!("{:?} is not a date (YYYY-MM-DD)", h.date.get_ref()),
                ),
            }
        }
        if !problems.is_empty() {
            return Err(CalendarError::File {
                path: path.to_path_buf(),
                problems,
            });
        }
        Ok(Self {
            source: path.to_path_buf(),
            time_zone: f.time_zone.get_ref().clone(),
            tz,
            shifts,
            downtime,
            holidays,
        })
    }

    fn instant(&self, d: Date, t: Time) -> i64 {
        let dt = d.to_datetime(t);
        self.tz
            .to_ambiguous_zoned(dt)
            .compatible()
            .map_or(0, |z| z.timestamp().as_microsecond())
    }

    /// Every shift that starts on a day from the one before `from_us` to
    /// the one of `to_us` (holidays skipped), with its day, start and end
    /// and its pieces without the breaks.
    fn each_shift(
        &self,
        from_us: i64,
        to_us: i64,
        mut f: impl FnMut(Date, &Shift, i64, i64, Vec<(i64, i64)>),
    ) {
        let date = |us: i64| {
            jiff::Timestamp::from_microsecond(us)
                .map(|t| t.to_zoned(self.tz.clone()).date())
                .unwrap_or(Date::constant(1970, 1, 1))
        };
        let (mut d, last) = (
            date(from_us).yesterday().unwrap_or(date(from_us)),
            date(to_us),
        );
        while d <= last {
            let wd = d.weekday().to_monday_zero_offset() as usize;
            if !self.holidays.contains(&d) {
                for s in self.shifts.iter().filter(|s| s.days[wd]) {
                    let next = d.tomorrow().unwrap_or(d);
                    let start = self.instant(d, s.start);
                    let end = self.instant(if s.end <= s.start { next } else { d }, s.end);
                    // Breaks at an earlier clock time than the start are
                    // after midnight (a night shift).
                    let mut pieces = vec![(start, end)];
                    for &(a, z) in &s.breaks {
                        let ba = self.instant(if a < s.start { next } else { d }, a);
                        let bz = self.instant(if z < s.start || z < a { next } else { d }, z);
                        pieces = subtract(&pieces, ba, bz);
                    }
                    f(d, s, start, end, pieces);
                }
            }
            match d.tomorrow() {
                Ok(n) => d = n,
                Err(_) => break,
            }
        }
    }

    /// The planned working windows overlapping [from_us, to_us), clipped
    /// to it, oldest first: shifts minus their breaks, planned downtime and
    /// holidays. Overlapping shifts merge (the later one's name is kept).
    pub fn working(&self, from_us: i64, to_us: i64) -> Vec<Window> {
        let mut raw: Vec<Window> = Vec::new();
        self.each_shift(from_us, to_us, |_, s, _, _, pieces| {
            raw.extend(pieces.into_iter().map(|(a, b)| Window {
                start_us: a,
                end_us: b,
                shift: s.name.clone(),
            }));
        });
        raw.sort_by_key(|w| w.start_us);
        let mut merged: Vec<Window> = Vec::new();
        for w in raw {
            match merged.last_mut() {
                Some(m) if w.start_us <= m.end_us => {
                    if w.end_us > m.end_us {
                        m.end_us = w.end_us;
                        m.shift = w.shift;
                    }
                }
                _ => merged.push(w),
            }
        }
        let mut out = Vec::new();
        for w in merged {
            let mut pieces = vec![(w.start_us.max(from_us), w.end_us.min(to_us))];
            for &(a, b, _) in &self.downtime {
                pieces = subtract(&pieces, a, b);
            }
            out.extend(
                pieces
                    .into_iter()
                    .filter(|(a, b)| b > a)
                    .map(|(a, b)| Window {
                        start_us: a,
                        end_us: b,
                        shift: w.shift.clone(),
                    }),
            );
        }
        out
    }

    /// Each shift that overlaps [from_us, to_us), as it falls: its name,
    /// its start and end (breaks included), and its planned working
    /// windows (breaks, planned downtime and the period's edges taken
    /// out). Holidays have none; shifts are not merged.
    pub fn instances(&self, from_us: i64, to_us: i64) -> Vec<ShiftInstance> {
        let mut out = Vec::new();
        self.each_shift(from_us, to_us, |d, s, start, end, pieces| {
            if end <= from_us || start >= to_us {
                return;
            }
            let mut pieces: Vec<(i64, i64)> = pieces
                .into_iter()
                .map(|(a, b)| (a.max(from_us), b.min(to_us)))
                .collect();
            for &(a, b, _) in &self.downtime {
                pieces = subtract(&pieces, a, b);
            }
            pieces.retain(|(a, b)| b > a);
            out.push(ShiftInstance {
                name: s.name.clone(),
                date: d,
                start_us: start,
                end_us: end,
                working: pieces,
            });
        });
        out.sort_by_key(|i| i.start_us);
        out
    }

    /// The windows of [from_us, to_us) the plant is off (the complement
    /// of [`ShiftCalendar::working`]).
    pub fn off(&self, from_us: i64, to_us: i64) -> Vec<(i64, i64)> {
        let mut out = Vec::new();
        let mut t = from_us;
        for w in self.working(from_us, to_us) {
            if w.start_us > t {
                out.push((t, w.start_us));
            }
            t = t.max(w.end_us);
        }
        if t < to_us {
            out.push((t, to_us));
        }
        out
    }

    /// Planned working time in [from_us, to_us), µs.
    pub fn planned_us(&self, from_us: i64, to_us: i64) -> i64 {
        self.working(from_us, to_us)
            .iter()
            .map(|w| w.end_us - w.start_us)
            .sum()
    }
}

/// `pieces` minus [a, b).
pub(crate) fn subtract(pieces: &[(i64, i64)], a: i64, b: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::with_capacity(pieces.len() + 1);
    for &(x, y) in pieces {
        if b <= x || a >= y {
            out.push((x, y));
            continue;
        }
        if x < a {
            out.push((x, a));
        }
        if b < y {
            out.push((b, y));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAL: &str = r#"version = 1
time_zone = "Europe/Paris"
[[shift]]
name = "early"
days = ["mon", "tue", "wed", "thu", "fri"]
start = "06:00"
end = "14:00"
breaks = [["09:00", "09:15"], ["12:00", "12:30"]]
[[shift]]
name = "night"
days = ["sat"]
start = "22:00"
end = "06:00"
breaks = [["02:00", "02:30"]]
[[planned_downtime]]
from = "2026-03-31 10:00"
to = "2026-03-31 11:00"
[[holiday]]
date = "2026-04-03"
"#;

    fn us(s: &str) -> i64 {
        let dt: DateTime = s.replace(' ', "T").parse().unwrap();
        TimeZone::get("Europe/Paris")
            .unwrap()
            .to_ambiguous_zoned(dt)
            .compatible()
            .unwrap()
            .timestamp()
            .as_microsecond()
    }

    #[test]
    fn shifts_breaks_downtime_holidays_midnight_and_dst() {
        let c = ShiftCalendar::parse(Path::new("c.toml"), CAL).unwrap();
        const H: i64 = 3_600_000_000;
        // A weekday: 8 h minus 45 min of breaks.
        assert_eq!(
            c.planned_us(us("2026-03-30 00:00"), us("2026-03-31 00:00")),
            8 * H - 45 * 60_000_000
        );
        // Tuesday: an hour of planned downtime more.
        assert_eq!(
            c.planned_us(us("2026-03-31 00:00"), us("2026-04-01 00:00")),
            7 * H - 45 * 60_000_000
        );
        // Good Friday is a holiday.
        assert_eq!(
            c.planned_us(us("2026-04-03 00:00"), us("2026-04-04 00:00")),
            0
        );
        // The night shift of Saturday 28 March 2026 crosses the change to
        // summer time (02:00 → 03:00): 22:00 → 06:00 is 7 h that night;
        // its 02:00 break, a clock time that does not exist, is taken at
        // 03:00 as the clock shows then: 6.5 h of work.
        let night = c.working(us("2026-03-28 12:00"), us("2026-03-29 12:00"));
        let total: i64 = night.iter().map(|w| w.end_us - w.start_us).sum();
        assert_eq!(total, 7 * H - 30 * 60_000_000, "{night:?}");
        // Off is the complement.
        let off = c.off(us("2026-03-30 00:00"), us("2026-03-31 00:00"));
        assert_eq!(off.len(), 4);
        assert_eq!(off[0], (us("2026-03-30 00:00"), us("2026-03-30 06:00")));
    }

    #[test]
    fn mistakes_are_reported_at_line_and_column() {
        let bad = CAL
            .replace("\"06:00\"\nend = \"14:00\"", "\"6 am\"\nend = \"14:00\"")
            .replace("\"sat\"", "\"samedi\"");
        let e = ShiftCalendar::parse(Path::new("c.toml"), &bad)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("c.toml:6:9: \"6 am\" is not a time of day"),
            "{e}"
        );
        assert!(
            e.contains("c.toml:11:9: \"samedi\" is not a weekday"),
            "{e}"
        );
        let e = ShiftCalendar::parse(
            Path::new("c.toml"),
            "version = 1\ntime_zone = \"Mars/Olympus\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("c.toml:2:13: unknown time zone"), "{e}");
    }
}

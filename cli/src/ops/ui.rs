//! Terminal interaction for `draas ops`: confirmation prompts, progress bars (only on a
//! terminal) and human durations (`500ms`, `30s`, `5m`, `2h`, `7d`; a bare number is seconds).

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use anyhow::bail;
use draas_bus::admin::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Parses `500ms`, `30s`, `5m`, `2h`, `7d` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration; use e.g. 500ms, 30s, 5m, 2h, 7d"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        other => return Err(format!("unknown unit `{other}`; use ms, s, m, h or d")),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// Asks a yes/no question on the terminal. Without a terminal on stdin, refuses: a script
/// must say `--yes`.
pub fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("refusing to go on without --yes: stdin is not a terminal ({question})");
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    let yes = matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes");
    if !yes {
        eprintln!("nothing changed");
    }
    Ok(yes)
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
pub struct Bar(ProgressBar);

pub fn bar(action: &str) -> Bar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    let style = ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(action.to_owned());
    Bar(bar)
}

impl Bar {
    pub fn done(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn total(&self, total: u64) {
        self.0.set_length(total);
    }

    fn advance(&self, n: u64) {
        if self.0.length().is_none() {
            self.0.set_length(self.0.position() + n);
        }
        self.0.inc(n);
    }
}

/// A duration for people: `850ms`, `12.3s`, `5m03s`, `2h10m`, `3d04h`.
pub fn human_ms(ms: u64) -> String {
    let s = ms / 1000;
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", s / 60, s % 60),
        3_600_000..86_400_000 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert_eq!(human_ms(850), "850ms");
        assert_eq!(human_ms(303_000), "5m03s");
    }
}

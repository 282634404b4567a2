//! What the client commands print: aligned tables for people, the API's JSON (or the same as
//! YAML) for scripts, ages (`5s`, `3m`, `2h`, `4d`), and a spinner on stderr while an
//! operation runs, drawn only on a terminal.

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use clap::ValueEnum;
use draas_protocol::Timestamp;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use super::http::ClientError;

/// `-o`: how a result is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// Aligned columns, for people.
    #[default]
    Table,
    /// The API's JSON as it answered.
    Json,
    /// The same as YAML (`get`: a DrasiInstance document `apply` accepts).
    Yaml,
}

/// Prints `value` as pretty JSON.
pub fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    );
}

/// `value` as YAML text.
pub fn yaml(value: &Value) -> Result<String, ClientError> {
    serde_yaml::to_string(value).map_err(|e| ClientError::Failed(format!("rendering YAML: {e}")))
}

/// Prints `value` in `format` (json or yaml).
pub fn print_data(value: &Value, format: Format) -> Result<(), ClientError> {
    match format {
        Format::Yaml => print!("{}", yaml(value)?),
        _ => print_json(value),
    }
    Ok(())
}

/// Rows under headers, each column as wide as its widest cell, two spaces apart.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.into_iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 2;
                out.push_str(&" ".repeat(pad));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// How long ago an RFC 3339 time was, in its largest whole unit.
pub fn age(rfc3339: Option<&str>) -> String {
    let Some(then) = rfc3339.and_then(Timestamp::parse_rfc3339) else {
        return "-".to_owned();
    };
    let now = draas_bus::clock::now();
    human(Duration::from_millis(
        now.millis().saturating_sub(then.millis()),
    ))
}

/// `5s`, `3m`, `2h`, `4d`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A string field, or `-`.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// Asks `question` on the terminal, unless `yes` already said so. Without a terminal on
/// stdin and without `--yes`: refused (exit 2), a script must say `--yes`.
pub fn confirm(question: &str, yes: bool) -> Result<bool, ClientError> {
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(ClientError::Usage(format!(
            "refusing without --yes: stdin is not a terminal ({question})"
        )));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| ClientError::Failed(format!("reading the answer: {e}")))?;
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// A spinner on stderr while something runs; hidden when stderr is not a terminal.
pub struct Spinner(ProgressBar);

impl Spinner {
    pub fn start(message: String) -> Spinner {
        let bar = match std::io::stderr().is_terminal() {
            true => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
            false => ProgressBar::hidden(),
        };
        let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        Spinner(bar)
    }

    pub fn set_message(&self, message: String) {
        self.0.set_message(message);
    }

    pub fn finish(self) {
        self.0.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let rows = vec![
            vec!["sensors".to_owned(), "running".to_owned()],
            vec!["a".to_owned(), "-".to_owned()],
        ];
        assert_eq!(
            table(&["NAME", "STATE"], &rows),
            "NAME     STATE\nsensors  running\na        -\n"
        );
    }

    #[test]
    fn ages_use_their_largest_unit() {
        assert_eq!(human(Duration::from_secs(5)), "5s");
        assert_eq!(human(Duration::from_secs(180)), "3m");
        assert_eq!(human(Duration::from_secs(7300)), "2h");
        assert_eq!(human(Duration::from_secs(4 * 86_400 + 5)), "4d");
        assert_eq!(age(None), "-");
        assert_eq!(age(Some("not a time")), "-");
    }
}

//! Just enough of a PromQL lexer to tell which metric names and label matchers an expression
//! uses: strings, durations, label lists after `by`/`without`/`on`/`ignoring`/`group_*`,
//! function and aggregation names and keywords are told apart from metric names. Grafana
//! variables (`$platform`, `${…}`) are skipped. Parsing proper is promtool's job (check.sh).

/// One label matcher: `label op "value"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub label: String,
    pub op: String,
    pub value: String,
}

/// What an expression refers to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Refs {
    /// Metric names, in order of appearance (repeats kept).
    pub metrics: Vec<String>,
    pub matchers: Vec<Matcher>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Punct(String),
}

const KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
    "start",
    "end",
];
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

fn lex(expr: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '"' || c == '\'' || c == '`' {
            let mut s = String::new();
            i += 1;
            loop {
                let Some(&d) = chars.get(i) else {
                    return Err(format!("unterminated string in {expr:?}"));
                };
                i += 1;
                if d == c {
                    break;
                }
                if d == '\\' && c != '`' {
                    s.extend(chars.get(i));
                    i += 1;
                } else {
                    s.push(d);
                }
            }
            toks.push(Tok::Str(s));
        } else if c == '[' {
            // A range or subquery: durations and Grafana variables only.
            while i < chars.len() && chars[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                while i < chars.len() && chars[i] != '}' {
                    i += 1;
                }
                i += 1;
            } else {
                while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            // A number or a duration (5m, 1e3, 0x1f).
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            toks.push(Tok::Ident(chars[start..i].iter().collect()));
        } else {
            let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
            let op = ["=~", "!~", "!=", "==", ">=", "<="]
                .into_iter()
                .find(|o| *o == two);
            let p = op.map_or_else(|| c.to_string(), str::to_owned);
            i += p.chars().count();
            toks.push(Tok::Punct(p));
        }
    }
    Ok(toks)
}

fn punct(t: Option<&Tok>, p: &str) -> bool {
    matches!(t, Some(Tok::Punct(q)) if q == p)
}

/// The metric names and label matchers of `expr`.
pub fn refs(expr: &str) -> Result<Refs, String> {
    let toks = lex(expr)?;
    let mut out = Refs::default();
    let mut i = 0;
    while i < toks.len() {
        match &toks[i] {
            Tok::Punct(p) if p == "{" => {
                // label op "value", ... }
                i += 1;
                while i < toks.len() && !punct(toks.get(i), "}") {
                    match (&toks[i], toks.get(i + 1), toks.get(i + 2)) {
                        (Tok::Ident(label), Some(Tok::Punct(op)), Some(Tok::Str(value))) => {
                            out.matchers.push(Matcher {
                                label: label.clone(),
                                op: op.clone(),
                                value: value.clone(),
                            });
                            i += 3;
                        }
                        (Tok::Punct(c), ..) if c == "," => i += 1,
                        // A bare metric name as a matcher value: {"name"} or {__name__=…}.
                        (Tok::Str(name), ..) => {
                            out.metrics.push(name.clone());
                            i += 1;
                        }
                        (t, ..) => {
                            return Err(format!("unexpected {t:?} in a selector of {expr:?}"));
                        }
                    }
                }
                i += 1;
            }
            Tok::Ident(word)
                if LABEL_LISTS.contains(&word.as_str()) && punct(toks.get(i + 1), "(") =>
            {
                while i < toks.len() && !punct(toks.get(i), ")") {
                    i += 1;
                }
                i += 1;
            }
            Tok::Ident(word) if KEYWORDS.contains(&word.to_ascii_lowercase().as_str()) => i += 1,
            Tok::Ident(word) => {
                let next = toks.get(i + 1);
                let is_call = punct(next, "(")
                    || matches!(next, Some(Tok::Ident(k)) if k == "by" || k == "without");
                if !is_call {
                    out.metrics.push(word.clone());
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    for m in &out.matchers {
        if m.label == "__name__" && m.op == "=" {
            out.metrics.push(m.value.clone());
        }
    }
    Ok(out)
}

#[test]
fn the_lexer_finds_metrics_and_matchers() {
    let r = refs(
        r#"histogram_quantile(0.99, sum by (le, platform) (rate(draas_x_bucket{kind!~"start|stop", platform=~"$platform"}[$__rate_interval])))
           / on (platform) group_left sum without (node) (draas_y offset 5m) > bool 2
           and max by (platform) (max_over_time(draas_z[1d])) > 0 or absent(up{job="a"}) unless ALERTS"#,
    )
    .unwrap();
    assert_eq!(
        r.metrics,
        ["draas_x_bucket", "draas_y", "draas_z", "up", "ALERTS"]
    );
    assert_eq!(
        r.matchers,
        [
            Matcher {
                label: "kind".into(),
                op: "!~".into(),
                value: "start|stop".into()
            },
            Matcher {
                label: "platform".into(),
                op: "=~".into(),
                value: "$platform".into()
            },
            Matcher {
                label: "job".into(),
                op: "=".into(),
                value: "a".into()
            },
        ]
    );
    assert!(
        refs(r#"draas_a{kind="x"#).is_err(),
        "an unterminated string is an error"
    );
}

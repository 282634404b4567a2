//! `${VAR}` and `${VAR:-default}` expansion over configuration text, with the variable lookup
//! supplied by the caller (this crate never reads the process environment).

use super::ConfigError;

/// Expands `${VAR}` (an error naming `VAR` when the lookup returns `None`) and
/// `${VAR:-default}` (the default when `VAR` is unset or empty). Whole-line YAML comments are
/// left untouched; `$` not followed by `{` is copied verbatim.
pub fn interpolate(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        expand_line(line, index + 1, lookup, &mut out)?;
    }
    Ok(out)
}

fn expand_line(
    line: &str,
    line_no: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
) -> Result<(), ConfigError> {
    let mut rest = line;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(ConfigError::new(
                "",
                format!(
                    "line {line_no}: unterminated `${{` in {:?}",
                    line.trim_end()
                ),
            ));
        };
        let body = &after[..end];
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        if !is_var_name(name) {
            return Err(ConfigError::new(
                "",
                format!("line {line_no}: invalid variable reference `${{{body}}}`"),
            ));
        }
        let value = match (lookup(name), default) {
            (Some(v), Some(d)) if v.is_empty() => d.to_string(),
            (Some(v), _) => v,
            (None, Some(d)) => d.to_string(),
            (None, None) => {
                return Err(ConfigError::new(
                    "",
                    format!(
                        "line {line_no}: environment variable `{name}` is not set \
                         (use `${{{name}:-default}}` to give a default)"
                    ),
                ));
            }
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(())
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("9000".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_unset_and_defaulted_variables() {
        let text = "port: ${PORT}\nhost: ${HOST:-127.0.0.1}\nlevel: ${EMPTY:-info}\nx: $PORT\n";
        let out = interpolate(text, &env).unwrap();
        assert_eq!(out, "port: 9000\nhost: 127.0.0.1\nlevel: info\nx: $PORT\n");
    }

    #[test]
    fn unset_variable_is_named_in_the_error() {
        let err = interpolate("a: 1\nb: ${MISSING_VAR}\n", &env).unwrap_err();
        assert!(err.message.contains("`MISSING_VAR`"), "{err}");
        assert!(err.message.contains("line 2"), "{err}");
    }

    #[test]
    fn comments_are_not_expanded_and_bad_syntax_fails() {
        assert_eq!(interpolate("  # ${NOPE}\n", &env).unwrap(), "  # ${NOPE}\n");
        assert!(interpolate("a: ${UNCLOSED\n", &env).is_err());
        assert!(interpolate("a: ${1BAD}\n", &env).is_err());
        assert_eq!(interpolate("a: ${X:-}", &env).unwrap(), "a: ");
    }
}

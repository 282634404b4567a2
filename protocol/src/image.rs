//! Which container image an instance runs: the operator's allow list. An instance's `image`
//! is the tenant's wish; the worker's configured image is always allowed, any other only when
//! a pattern of the operator's list (`--allowed-image`, on the API and on the workers) matches
//! it. With no patterns, tenants cannot choose.

/// The operator's image allow list. A pattern is an image reference in which `*` stands for
/// any run of characters (`ghcr.io/acme/*`, `draas-runtime:*`, `*` for any image).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImagePolicy {
    patterns: Vec<String>,
}

impl ImagePolicy {
    pub fn new(patterns: impl IntoIterator<Item = impl Into<String>>) -> Self {
        ImagePolicy {
            patterns: patterns.into_iter().map(Into::into).collect(),
        }
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether some pattern matches `image`.
    pub fn allows(&self, image: &str) -> bool {
        self.patterns.iter().any(|p| matches(p, image))
    }

    /// The image to run: `configured` when the instance names none (or names it), else the
    /// named one if the list allows it; otherwise a message saying why not.
    pub fn choose(&self, requested: Option<&str>, configured: &str) -> Result<String, String> {
        match requested {
            None => Ok(configured.to_owned()),
            Some(image) if image == configured || self.allows(image) => Ok(image.to_owned()),
            Some(image) => Err(format!(
                "image `{image}` is not allowed by the operator (--allowed-image); \
                 omit `image` to run the platform's image"
            )),
        }
    }
}

/// `*`-glob match over the whole text.
fn matches(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_references() {
        let cases = [
            ("ghcr.io/acme/*", "ghcr.io/acme/x:1", true),
            ("ghcr.io/acme/*", "ghcr.io/acme-evil/x:1", false),
            ("draas-runtime:*", "draas-runtime:local", true),
            ("draas-runtime:local", "draas-runtime:local2", false),
            ("*", "anything/at:all", true),
            ("a*b*c", "a-x-b-y-c", true),
            ("a*b*c", "a-x-c", false),
            ("ab*ba", "aba", false),
        ];
        for (pattern, image, allowed) in cases {
            assert_eq!(
                ImagePolicy::new([pattern]).allows(image),
                allowed,
                "{pattern} {image}"
            );
        }
    }

    #[test]
    fn without_patterns_only_the_configured_image_runs() {
        let none = ImagePolicy::default();
        assert_eq!(none.choose(None, "img:1").unwrap(), "img:1");
        assert_eq!(none.choose(Some("img:1"), "img:1").unwrap(), "img:1");
        let err = none.choose(Some("evil:1"), "img:1").unwrap_err();
        assert!(err.contains("`evil:1`"), "{err}");
        let some = ImagePolicy::new(["evil:*"]);
        assert_eq!(some.choose(Some("evil:1"), "img:1").unwrap(), "evil:1");
    }
}

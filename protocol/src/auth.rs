//! Who may do what: tenants and scopes. A token belongs to one tenant and holds a set of
//! scopes; every API route is guarded by exactly one scope (`api/src/auth/`).

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A permission a token may hold.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
pub enum Scope {
    /// get, list, operations, events.
    #[serde(rename = "instances:read")]
    InstancesRead,
    /// create, patch, delete.
    #[serde(rename = "instances:write")]
    InstancesWrite,
    /// start, stop, restart, logs.
    #[serde(rename = "instances:operate")]
    InstancesOperate,
    /// Everything under `/api/v1/admin`, workers, platform ping: cluster-wide.
    #[serde(rename = "admin")]
    Admin,
    /// Managing tokens.
    #[serde(rename = "tokens")]
    Tokens,
    /// Reading an instance's data (queries, results, result changes).
    #[serde(rename = "data:read")]
    DataRead,
    /// Feeding an instance's sources.
    #[serde(rename = "data:write")]
    DataWrite,
    /// Every scope, across tenants: a cluster administrator.
    #[serde(rename = "*")]
    All,
}

impl Scope {
    pub const ALL: [Scope; 8] = [
        Scope::InstancesRead,
        Scope::InstancesWrite,
        Scope::InstancesOperate,
        Scope::Admin,
        Scope::Tokens,
        Scope::DataRead,
        Scope::DataWrite,
        Scope::All,
    ];

    /// The wire name (`instances:read`, `*`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::InstancesRead => "instances:read",
            Scope::InstancesWrite => "instances:write",
            Scope::InstancesOperate => "instances:operate",
            Scope::Admin => "admin",
            Scope::Tokens => "tokens",
            Scope::DataRead => "data:read",
            Scope::DataWrite => "data:write",
            Scope::All => "*",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown scope `{0}`; scopes: instances:read, instances:write, instances:operate, admin, tokens, data:read, data:write, *"
)]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| UnknownScope(text.to_owned()))
    }
}

/// The scopes a token holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct Scopes(pub BTreeSet<Scope>);

impl Scopes {
    /// Whether these scopes allow what `needed` guards. `*` allows everything.
    pub fn allows(&self, needed: Scope) -> bool {
        self.0.contains(&Scope::All) || self.0.contains(&needed)
    }

    /// Whether this is a cluster administrator (`*`), who sees every tenant.
    pub fn is_cluster_admin(&self) -> bool {
        self.0.contains(&Scope::All)
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Scopes(iter.into_iter().collect())
    }
}

/// The tenant used when authentication is off (`--auth none`, development only).
pub const DEFAULT_TENANT: &str = "default";

/// Whether `name` is a valid tenant name: 1 to 63 lowercase letters, digits or `-`, not
/// starting or ending with `-` (usable in key names and labels).
pub fn is_tenant_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The prefix of every token secret, so secret scanners recognise a leaked one.
pub const TOKEN_PREFIX: &str = "draas_";

/// A token as stored and listed: everything but the secret (Redis keeps only its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    /// The token's id (revoke it by this).
    pub id: String,
    /// The tenant it acts for.
    pub tenant: String,
    /// What it may do.
    pub scopes: Scopes,
    /// For people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When it was made.
    pub created_at: crate::Timestamp,
    /// After this instant the token is refused; `null`: it never expires.
    #[serde(default)]
    pub expires_at: Option<crate::Timestamp>,
    /// Approximate: written at most once a minute per API node.
    #[serde(default)]
    pub last_used_at: Option<crate::Timestamp>,
}

impl TokenRecord {
    /// Whether the token is past its expiry at `now`.
    pub fn expired(&self, now: crate::Timestamp) -> bool {
        self.expires_at
            .is_some_and(|at| now.millis() >= at.millis())
    }
}

/// A lifetime like `30d`, `12h`, `45m` or `90s`, in milliseconds; `None` if it is not one
/// (or is zero).
pub fn parse_lifetime(text: &str) -> Option<u64> {
    let unit = match text.chars().last()? {
        'd' => 86_400_000,
        'h' => 3_600_000,
        'm' => 60_000,
        's' => 1_000,
        _ => return None,
    };
    let n: u64 = text[..text.len() - 1].parse().ok()?;
    n.checked_mul(unit).filter(|ms| *ms > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_render_and_allow() {
        for scope in Scope::ALL {
            assert_eq!(scope.as_str().parse::<Scope>().unwrap(), scope);
            assert_eq!(
                serde_json::to_string(&scope).unwrap(),
                format!("\"{}\"", scope.as_str())
            );
        }
        assert!("instances".parse::<Scope>().is_err());
        let reader: Scopes = [Scope::InstancesRead].into_iter().collect();
        assert!(reader.allows(Scope::InstancesRead));
        assert!(!reader.allows(Scope::InstancesWrite));
        assert!(!reader.is_cluster_admin());
        let admin: Scopes = [Scope::All].into_iter().collect();
        assert!(Scope::ALL.into_iter().all(|s| admin.allows(s)));
        assert!(admin.is_cluster_admin());
    }

    #[test]
    fn lifetimes() {
        assert_eq!(parse_lifetime("30d"), Some(30 * 86_400_000));
        assert_eq!(parse_lifetime("2h"), Some(7_200_000));
        assert_eq!(parse_lifetime("90s"), Some(90_000));
        for bad in ["", "d", "0d", "5", "5w", "-1d", "1.5h"] {
            assert_eq!(parse_lifetime(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tenant_names() {
        assert!(is_tenant_name("acme-1"));
        for bad in ["", "-a", "a-", "Acme", "a:b", "a b", &"x".repeat(64)] {
            assert!(!is_tenant_name(bad), "{bad:?}");
        }
    }
}

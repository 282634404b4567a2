//! `draas tokens`: create, list and revoke API tokens straight on Redis (how the first token
//! is made), and the start-up checks of `draas api`'s authentication (`--auth`).

use std::net::SocketAddr;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use draas_api::auth::AuthMode;
use draas_bus::Store;
use draas_bus::clock::now;
use draas_protocol::Timestamp;
use draas_protocol::auth::{Scope, Scopes, is_tenant_name, parse_lifetime};

use crate::Common;

#[derive(Args)]
pub struct TokensArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    command: TokensCmd,
}

#[derive(Subcommand)]
enum TokensCmd {
    /// Make a token and print its secret (shown this once, never again).
    Create {
        /// The tenant the token (and every instance it creates) belongs to.
        #[arg(long)]
        tenant: String,
        /// A scope: instances:read, instances:write, instances:operate, admin, tokens,
        /// data:read, data:write, or `*` (cluster administrator); repeatable.
        #[arg(long = "scope", required = true)]
        scopes: Vec<Scope>,
        /// Lifetime, e.g. 30d, 12h, 45m; never expires when absent.
        #[arg(long, value_parser = parse_expires)]
        expires: Option<u64>,
        #[arg(long)]
        description: Option<String>,
        /// Print only the secret (for scripts).
        #[arg(long)]
        quiet: bool,
    },
    /// List tokens (never their secrets).
    List {
        /// Only this tenant's tokens.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a token by id; every API node refuses it within a second.
    Revoke { id: String },
}

fn parse_expires(text: &str) -> Result<u64, String> {
    parse_lifetime(text).ok_or_else(|| format!("`{text}` is not a lifetime like 30d, 12h or 45m"))
}

/// `--auth tokens|none`.
pub fn parse_auth(text: &str) -> Result<AuthMode, String> {
    match text {
        "tokens" => Ok(AuthMode::Tokens),
        "none" => Ok(AuthMode::None),
        other => Err(format!("unknown auth mode `{other}`; use tokens or none")),
    }
}

/// Refuses `--auth none` on an address other machines can reach.
pub fn check_listen(mode: AuthMode, listen: SocketAddr) -> anyhow::Result<()> {
    if mode == AuthMode::None && !listen.ip().is_loopback() {
        bail!(
            "--auth none is for development only and is refused on {listen}, which is not a loopback address; listen on 127.0.0.1 or use tokens"
        );
    }
    Ok(())
}

/// With token authentication, refuses to start while Redis holds no token.
pub async fn check_tokens_exist(store: &Store) -> anyhow::Result<()> {
    if !store.has_tokens().await.context("reading tokens")? {
        bail!(
            "no API token exists, so nobody could use this API; create one first: draas tokens create --tenant default --scope '*'"
        );
    }
    Ok(())
}

pub async fn run(args: TokensArgs) -> anyhow::Result<()> {
    let store = args.common.store().await?;
    match args.command {
        TokensCmd::Create {
            tenant,
            scopes,
            expires,
            description,
            quiet,
        } => {
            let made = create(&store, &tenant, scopes, expires, description).await?;
            if quiet {
                println!("{}", made.secret);
            } else {
                println!("token {} (tenant {tenant})", made.record.id);
                println!("{}", made.secret);
                println!("This secret is shown once; keep it (e.g. export TOKEN=…).");
            }
        }
        TokensCmd::List { tenant } => {
            println!(
                "{:<36}  {:<16}  {:<40}  {:<13}  DESCRIPTION",
                "ID", "TENANT", "SCOPES", "EXPIRES"
            );
            let mut cursor: Option<String> = None;
            loop {
                let (page, next) = store
                    .tokens_page(tenant.as_deref(), cursor.as_deref(), 200)
                    .await?;
                for t in page {
                    let scopes: Vec<&str> = t.scopes.0.iter().map(|s| s.as_str()).collect();
                    let expires = t
                        .expires_at
                        .map_or("never".to_owned(), |at| at.millis().to_string());
                    println!(
                        "{:<36}  {:<16}  {:<40}  {:<13}  {}",
                        t.id,
                        t.tenant,
                        scopes.join(","),
                        expires,
                        t.description.unwrap_or_default()
                    );
                }
                match next {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
        }
        TokensCmd::Revoke { id } => match store.revoke_token(&id).await? {
            Some(t) => println!("revoked token {id} (tenant {})", t.tenant),
            None => bail!("no token {id}"),
        },
    }
    Ok(())
}

/// Makes a token after checking its tenant name.
pub async fn create(
    store: &Store,
    tenant: &str,
    scopes: Vec<Scope>,
    expires_ms: Option<u64>,
    description: Option<String>,
) -> anyhow::Result<draas_bus::store::tokens::NewToken> {
    if !is_tenant_name(tenant) {
        bail!(
            "--tenant `{tenant}`: 1 to 63 lowercase letters, digits or '-', not starting or ending with '-'"
        );
    }
    let expires_at = expires_ms.map(|ms| Timestamp(now().millis().saturating_add(ms)));
    let scopes: Scopes = scopes.into_iter().collect();
    Ok(store
        .create_token(tenant, scopes, description, expires_at)
        .await?)
}

//! Whether a live worker of the platform can run a config's component kinds, judged by what
//! the workers advertise their workload supports (`draas_protocol::capabilities`): a config
//! whose kinds no live worker's workload has is a 422 naming the field at create and patch,
//! instead of a start that fails later. When no live worker says (or one of them does not:
//! drasi-server without a `--capabilities-file`, a wrapper script, a Kubernetes worker
//! without the file its init container writes), nothing can be judged and the config is
//! accepted.

use draas_protocol::Platform;
use draas_protocol::drasi::DrasiConfig;

use crate::App;
use crate::error::{ApiError, ApiResult};

/// Refuses `config` when every live worker of `platform` says its workload lacks one of the
/// config's kinds.
pub async fn check(app: &App, platform: Platform, config: &DrasiConfig) -> ApiResult<()> {
    let advertised = app.store.advertisements(platform).await?;
    let Some(all) = advertised
        .iter()
        .map(|a| a.kinds.as_ref())
        .collect::<Option<Vec<_>>>()
        .filter(|all| !all.is_empty())
    else {
        return Ok(());
    };
    let missing: Vec<_> = all.iter().map(|kinds| kinds.missing(config)).collect();
    if missing.iter().any(Vec::is_empty) {
        return Ok(());
    }
    let first = &missing[0][0];
    let mut workloads: Vec<String> = all
        .iter()
        .map(|k| {
            format!(
                "{} (sources: {}; reactions: {})",
                k.workload,
                k.sources.join(", "),
                k.reactions.join(", ")
            )
        })
        .collect();
    workloads.sort();
    workloads.dedup();
    Err(ApiError::unprocessable(
        "unsupported_kind",
        format!(
            "{}: kind `{}` is not supported by the workload of any live {platform} worker: {}",
            first.field,
            first.kind,
            workloads.join("; ")
        ),
        Some(first.field.clone()),
    ))
}

//! Where the data plane finds a query or a source inside an instance's config: which of the
//! instance's drasi-server API prefixes serves a query (`/api/v1` for the implicit or first
//! instance, `/api/v1/instances/<id>` for another), and the kind of a source (events are
//! posted only to `http` sources). The API uses this to answer 404 naming the query or
//! source; the worker to build the path it forwards to.

use super::{DrasiConfig, InstanceConfig, SourceConfig};

/// Why a query cannot be addressed through the data plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryLookup {
    /// The instance's API prefix that serves the query.
    Found(String),
    /// No query of the config has this id.
    Unknown,
    /// The query lives in `instances[<index>]`, which has no `id` and is not the first
    /// instance, so the runtime gives it an id of its own choosing.
    Unaddressable { index: usize },
}

impl DrasiConfig {
    /// The API prefix under which the instance serves query `id`.
    pub fn query_api_base(&self, id: &str) -> QueryLookup {
        if self.instances.is_empty() {
            return if self.queries.iter().any(|q| q.id == id) {
                QueryLookup::Found("/api/v1".to_owned())
            } else {
                QueryLookup::Unknown
            };
        }
        for (index, inst) in self.instances.iter().enumerate() {
            if !inst.queries.iter().any(|q| q.id == id) {
                continue;
            }
            return match (&inst.id, index) {
                (_, 0) => QueryLookup::Found("/api/v1".to_owned()),
                (Some(iid), _) => QueryLookup::Found(format!("/api/v1/instances/{iid}")),
                (None, index) => QueryLookup::Unaddressable { index },
            };
        }
        QueryLookup::Unknown
    }

    /// The API prefixes of every addressable instance of the config, in config order.
    pub fn api_bases(&self) -> Vec<String> {
        self.addressable_instances()
            .into_iter()
            .map(|(base, _)| base)
            .collect()
    }

    /// Every addressable instance of the config (the implicit one, or each of `instances`
    /// that is first or has an id) with its API prefix, in config order.
    pub fn addressable_instances(&self) -> Vec<(String, InstanceConfig)> {
        self.effective_instances()
            .into_iter()
            .enumerate()
            .filter_map(|(index, (_, inst))| match (&inst.id, index) {
                (_, 0) => Some(("/api/v1".to_owned(), inst)),
                (Some(iid), _) => Some((format!("/api/v1/instances/{iid}"), inst)),
                (None, _) => None,
            })
            .collect()
    }

    /// The kind of source `id` (`http`, `mock`, …), if the config has one by that id.
    pub fn source_kind(&self, id: &str) -> Option<&'static str> {
        let find =
            |sources: &[SourceConfig]| sources.iter().find(|s| s.id() == id).map(|s| s.kind());
        find(&self.sources).or_else(|| self.instances.iter().find_map(|i| find(&i.sources)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> DrasiConfig {
        DrasiConfig::from_yaml_str(yaml).unwrap()
    }

    #[test]
    fn queries_are_found_under_their_instance() {
        let top = config(
            "sources: [{kind: http, id: s}]\nqueries: [{id: q, query: 'MATCH (n) RETURN n', sources: [{sourceId: s}]}]\n",
        );
        assert_eq!(
            top.query_api_base("q"),
            QueryLookup::Found("/api/v1".into())
        );
        assert_eq!(top.query_api_base("nope"), QueryLookup::Unknown);
        assert_eq!(top.source_kind("s"), Some("http"));
        assert_eq!(top.source_kind("nope"), None);
        assert_eq!(top.api_bases(), vec!["/api/v1".to_owned()]);

        let nested = config(
            "instances:\n\
             - {queries: [{id: a, query: 'MATCH (n) RETURN n', sources: [{sourceId: s}]}], sources: [{kind: mock, id: s}]}\n\
             - {id: two, queries: [{id: b, query: 'MATCH (n) RETURN n', sources: [{sourceId: t}]}], sources: [{kind: http, id: t}]}\n\
             - {queries: [{id: c, query: 'MATCH (n) RETURN n', sources: [{sourceId: u}]}], sources: [{kind: mock, id: u}]}\n",
        );
        assert_eq!(
            nested.query_api_base("a"),
            QueryLookup::Found("/api/v1".into())
        );
        assert_eq!(
            nested.query_api_base("b"),
            QueryLookup::Found("/api/v1/instances/two".into())
        );
        assert_eq!(
            nested.query_api_base("c"),
            QueryLookup::Unaddressable { index: 2 }
        );
        assert_eq!(nested.source_kind("t"), Some("http"));
        assert_eq!(nested.source_kind("u"), Some("mock"));
        assert_eq!(
            nested.api_bases(),
            vec!["/api/v1".to_owned(), "/api/v1/instances/two".to_owned()]
        );
    }
}

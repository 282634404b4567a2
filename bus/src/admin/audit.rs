//! The audit stream for operators: a page of entries, newest first (`draas ops audit`,
//! `GET /api/v1/admin/audit`). One `XREVRANGE … COUNT` per page.

use super::{Admin, AdminError};
use crate::store::AuditPage;

/// The largest page.
pub const MAX_AUDIT_PAGE: usize = 1000;

impl Admin {
    /// Up to `limit` (1 to 1000) audit entries older than `cursor`, newest first.
    pub async fn audit(&self, cursor: Option<&str>, limit: usize) -> Result<AuditPage, AdminError> {
        if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
            return Err(AdminError::invalid(
                "limit",
                format!("limit {limit} must be 1 to {MAX_AUDIT_PAGE}"),
            ));
        }
        if let Some(cursor) = cursor
            && !is_stream_id(cursor)
        {
            return Err(AdminError::invalid(
                "cursor",
                format!("`{cursor}` is not a stream id (ms-seq)"),
            ));
        }
        Ok(self.store.audit_page(cursor, limit).await?)
    }
}

/// `<ms>-<seq>`, both decimal.
fn is_stream_id(text: &str) -> bool {
    text.split_once('-').is_some_and(|(ms, seq)| {
        [ms, seq]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn stream_ids() {
        assert!(super::is_stream_id("1700000000000-0"));
        assert!(!super::is_stream_id("1700000000000"));
        assert!(!super::is_stream_id("a-1"));
        assert!(!super::is_stream_id("1-"));
    }
}

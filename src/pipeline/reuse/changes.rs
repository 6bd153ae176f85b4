//! The changes a vector store loaded from the earlier output must apply (`changes.jsonl`).

use super::PreviousCollection;
use crate::export::manifest::ChangeCounts;

/// The deletions of the earlier points whose chunk is gone, rendered; their count.
pub fn deletions(
    previous: Option<&PreviousCollection>,
    owned: &dyn Fn(&str) -> bool,
) -> serde_json::Result<(Vec<u8>, usize)> {
    let mut out = Vec::new();
    let mut counts = ChangeCounts::default();
    for (chunk_id, point_id) in previous
        .map(PreviousCollection::unseen)
        .unwrap_or_default()
        .into_iter()
        .filter(|(chunk_id, _)| owned(chunk_id))
    {
        change_line(
            &mut out,
            &mut counts,
            &ChangeLine {
                change: "deleted",
                point_id,
                chunk_id: &chunk_id,
                reason: Some("removed"),
            },
        )?;
    }
    Ok((out, counts.deleted))
}

/// A line of `changes.jsonl`.
#[derive(serde::Serialize)]
pub struct ChangeLine<'a> {
    /// `added`, `updated` or `deleted`.
    pub change: &'a str,
    pub point_id: uuid::Uuid,
    pub chunk_id: &'a str,
    /// `updated`: `text_changed`, `model_changed` or `payload_changed`; `deleted`: `removed`
    /// (the chunk is gone) or `failed` (no point this time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

/// Renders a change line (newline included) and counts it.
pub(super) fn change_line(
    out: &mut Vec<u8>,
    counts: &mut ChangeCounts,
    line: &ChangeLine<'_>,
) -> serde_json::Result<()> {
    match line.change {
        "added" => counts.added += 1,
        "updated" => counts.updated += 1,
        _ => counts.deleted += 1,
    }
    serde_json::to_writer(&mut *out, line)?;
    out.push(b'\n');
    Ok(())
}

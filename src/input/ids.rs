//! Chunk ids and point ids.

use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::ChunkId;

/// Namespace of the UUIDv5 point ids (`03832116-a7ce-42f0-8170-58863da6b133`).
///
/// A fixed, randomly generated UUID. Changing it changes every point id, so
/// it must never change.
pub const POINT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x03832116_a7ce_42f0_8170_58863da6b133);

/// The point id of a chunk: UUIDv5 in [`POINT_ID_NAMESPACE`] over
/// `collection + "/" + id`.
pub fn point_id(collection: &str, id: &ChunkId) -> Uuid {
    let mut name = Vec::with_capacity(collection.len() + 1 + id.as_str().len());
    name.extend_from_slice(collection.as_bytes());
    name.push(b'/');
    name.extend_from_slice(id.as_str().as_bytes());
    Uuid::new_v5(&POINT_ID_NAMESPACE, &name)
}

/// The id of a chunk that has none: the first 16 hex digits of
/// `sha256(collection + "\0" + embedding_text)`.
pub fn derive_chunk_id(collection: &str, embedding_text: &str) -> ChunkId {
    let mut hasher = Sha256::new();
    hasher.update(collection.as_bytes());
    hasher.update([0u8]);
    hasher.update(embedding_text.as_bytes());
    let digest = hasher.finalize();
    ChunkId(hex::encode(&digest[..8]))
}

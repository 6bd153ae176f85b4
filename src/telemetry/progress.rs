//! Progress display (placeholder until progress lands).
